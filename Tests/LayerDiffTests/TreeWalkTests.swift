import Foundation
import LayerDiff
import LayerSystem
import StrataTestSupport
import Testing

/// The two-tree engine on plain directories: moby's pinned ChangesDirs tests.
@Suite("two-tree walk", rootOnly)
struct TreeWalkTests {
    static func base(_ root: String) throws {
        try Fixture.build([
            .file("file1", "1"), .file("file2", "2"), .file("file3", "3"), .file("file4", "4"),
            .file("file5", "5"), .file("file6", "6"), .file("file7", "7"),
            .dir("dir1", [.file("f", "x")]), .dir("dir2", [.file("f", "x")]), .dir("dir3", [.file("f", "x")]),
            .dir("dir4", [.file("f", "x")]),
            .symlink("symlink1", to: "target1"), .symlink("symlink2", to: "target2"),
            .symlink("symlink3", to: "target3"), .symlink("symlink4", to: "target4"), .symlink("dirSymlink", to: "dir1"),
        ], at: root)
    }

    /// moby TestChangesDirsMutated, in moby-canonical order.
    @Test func changesDirsMutated() throws {
        let t = TemporaryDirectory(prefix: "sdt")
        let old = t.makeDirectory("old"), new = t.sub("new")
        try Self.base(old)
        try Shell.run(["cp", "-a", old, new])
        try Shell.sh("""
            cd \(new) && rm file1 && rm -r dir1 && rm symlink1 && echo rewritten > file2 && rm file3 && echo 3x > file3 \
            && touch -d "@$(( $(stat -c %Y file4) + 1 ))" file4 && rm file5 && mkdir file5 && echo n > filenew \
            && mkdir dirnew && ln -s target symlinknew && rm symlink2 && ln -s target2b symlink2 \
            && rm -r dir2 && echo f > dir2 && touch -d "@$(( $(stat -c %Y dir3) + 1 ))" dir3
            """)
        let result = try lines(TreeWalk(oldPath: old, newPath: new))
        #expect(result == ["C /dir2", "A /dirnew", "C /file2", "C /file3", "C /file4", "C /file5", "A /filenew",
                           "C /symlink2", "A /symlinknew", "D /dir1", "D /file1", "D /symlink1"])
        // c/storage-style directory mtimes only with --strict.
        let strict = try lines(TreeWalk(oldPath: old, newPath: new, options: DiffOptions(strict: true)))
        #expect(strict == ["C /dir2", "C /dir3", "A /dirnew", "C /file2", "C /file3", "C /file4", "C /file5", "A /filenew",
                           "C /symlink2", "A /symlinknew", "D /dir1", "D /file1", "D /symlink1"])
    }

    /// moby TestChangesDirsEmpty, and a hardlinked copy (pruned by dev+ino).
    @Test(arguments: ["-a", "-al"])
    func copiesHaveNoChanges(_ flags: String) throws {
        let t = TemporaryDirectory(prefix: "sdt")
        let old = t.makeDirectory("old"), new = t.sub("new")
        try Self.base(old)
        try Shell.run(["cp", flags, old, new])
        #expect(try lines(TreeWalk(oldPath: old, newPath: new)) == [])
        #expect(try lines(TreeWalk(oldPath: old, newPath: new, options: DiffOptions(strict: true))) == [])
    }

    @Test func rootIsNeverListed() throws {
        let t = TemporaryDirectory(prefix: "sdt")
        let old = t.makeDirectory("old"), new = t.makeDirectory("new")
        try Shell.run(["chmod", "700", new])
        try Shell.run(["chown", "7:7", new])
        #expect(try lines(TreeWalk(oldPath: old, newPath: new)) == [])
    }

    @Test func addedTreeListsEveryDescendantDeletedTreeOnlyItsTop() throws {
        let t = TemporaryDirectory(prefix: "sdt")
        let old = t.makeDirectory("old"), new = t.makeDirectory("new")
        try Fixture.build([.dir("gone", [.dir("x", [.file("y")])])], at: old)
        try Fixture.build([.dir("new", [.dir("x", [.file("y")])])], at: new)
        #expect(try lines(TreeWalk(oldPath: old, newPath: new)) == ["A /new", "A /new/x", "A /new/x/y", "D /gone"])
    }
}
