import LayerSystem
import OverlayCore
import Testing

/// fuse-overlayfs's owner options, as containers-storage passes them.
@Suite("Owner mapping and squashing (fuse-overlayfs options)")
struct AttributePresentationTests {
    func attributes(user: UInt32, group: UInt32, directory: Bool = false) -> FileAttributes {
        FileAttributes(mode: directory ? 0o040755 : 0o100644, linkCount: 3, userID: user, groupID: group)
    }

    @Test func parsesFuseOverlayfsSyntax() {
        #expect(AttributePresentation.ranges("0:100000:65536") == [.init(stored: 0, shown: 100000, count: 65536)])
        #expect(AttributePresentation.ranges("0:1000:1:1:100000:65536")?.count == 2)
        #expect(AttributePresentation.ranges(":0:100000:65536") == [.init(stored: 0, shown: 100000, count: 65536)], "containers-storage's leading colon")
        #expect(AttributePresentation.ranges("0:1000") == nil)
        #expect(AttributePresentation.ranges("a:b:c") == nil)
        #expect(AttributePresentation.ranges("") == nil)
    }

    @Test func mapsBothWaysAndOverflows() {
        var p = AttributePresentation()
        p.users = AttributePresentation.ranges("0:1000:1:1:100000:65536")!
        p.groups = AttributePresentation.ranges("0:2000:10")!
        let shown = p.present(attributes(user: 5, group: 3))
        #expect(shown.userID == 100004 && shown.groupID == 2003)
        #expect(p.present(attributes(user: 0, group: 0)).userID == 1000)
        #expect(p.present(attributes(user: 70000, group: 11)).userID == 65534, "unmapped stored IDs show as the overflow ID")
        #expect(p.present(attributes(user: 70000, group: 11)).groupID == 65534)
        #expect(p.storedUser(100004) == 5 && p.storedUser(1000) == 0 && p.storedGroup(2009) == 9)
        #expect(p.storedUser(42) == 65534, "unmapped IDs given by users are stored as the overflow ID")
    }

    @Test func squashesOnlyWhatIsShown() {
        var p = AttributePresentation()
        p.squashedUser = 0
        p.squashedGroup = 7
        let shown = p.present(attributes(user: 1234, group: 99))
        #expect(shown.userID == 0 && shown.groupID == 7)
        #expect(p.ignoresOwnerChanges)
        #expect(p.storedUser(55) == 55)
    }

    @Test func staticLinkCountForDirectories() {
        var p = AttributePresentation()
        p.staticDirectoryLinks = true
        #expect(p.present(attributes(user: 0, group: 0, directory: true)).linkCount == 1)
        #expect(p.present(attributes(user: 0, group: 0)).linkCount == 3)
        #expect(AttributePresentation().isIdentity)
    }
}
