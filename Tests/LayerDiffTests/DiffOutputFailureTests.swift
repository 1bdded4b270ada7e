import Foundation
import StrataTestSupport
import Testing

@Suite("strata diff output failures")
struct DiffOutputFailureTests {
    @Test("a change list that cannot be written is an error, not a silent partial list")
    func fullDisk() throws {
        let tmp = TemporaryDirectory(prefix: "dfull")
        let lower = tmp.makeDirectory("l"), upper = tmp.makeDirectory("u")
        try Fixture.build([.file("new", "a")], at: upper)
        let r = try Shell.run(["sh", "-c", "exec \"$0\" diff --lower \"$1\" --upper \"$2\" > /dev/full", StrataBinary.path, lower, upper])
        #expect(r.status == 2)
        #expect(r.stderr == "strata: cannot write the change list to standard output: the list is incomplete\n")
    }
}
