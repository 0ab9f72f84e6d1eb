import SwitchboardCLI
import Testing

@Suite struct TextTableTests {
    @Test func columnsArePaddedToTheWidestCellAndNumbersAlignRight() {
        var table = TextTable(headers: ["service", "ready", "lag"], alignments: [.left, .left, .right])
        table.append(["gateway", "yes", "0"])
        table.append(["workflow-runner", "no", "1234"])
        #expect(
            table.render() == """
                service          ready   lag
                ---------------  -----  ----
                gateway          yes       0
                workflow-runner  no     1234
                """)
    }

    @Test func shortRowsAreFilledAndNoLineEndsInSpaces() {
        var table = TextTable(headers: ["a", "b"])
        table.append(["long cell"])
        let lines = table.render().split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines == ["a          b", "---------  -", "long cell"])
        #expect(lines.allSatisfy { $0.last != " " })
    }

    @Test func aTableWithoutRowsIsItsHeader() {
        #expect(TextTable(headers: ["group", "lag"]).render() == "group  lag\n-----  ---")
    }
}

@Suite struct ProgressFormatTests {
    @Test(arguments: [
        (0, "roundtrip [..........]   0/200   0%"),
        (50, "roundtrip [##........]  50/200  25%"),
        (200, "roundtrip [##########] 200/200 100%"),
        (250, "roundtrip [##########] 200/200 100%"),
    ])
    func theBarFillsInProportion(completed: Int, expected: String) {
        #expect(ProgressFormat.bar(label: "roundtrip", completed: completed, total: 200, width: 10) == expected)
    }

    @Test func withoutATotalOnlyTheCountIsShown() {
        #expect(ProgressFormat.bar(label: "connections", completed: 17, total: nil) == "connections  17")
    }

    @Test func busyRowsSpinAndFinishedRowsShowTheirMark() {
        let busy = StatusRow(.busy, "gateway starting")
        #expect(ProgressFormat.row(busy, tick: 0) == "⠋ gateway starting")
        #expect(ProgressFormat.row(busy, tick: 1) == "⠙ gateway starting")
        #expect(ProgressFormat.row(busy, tick: ProgressFormat.spinnerFrames.count) == "⠋ gateway starting")
        #expect(ProgressFormat.row(StatusRow(.done, "gateway ready"), tick: 3) == "✓ gateway ready")
        #expect(ProgressFormat.row(StatusRow(.failed, "gateway down"), tick: 3) == "✗ gateway down")
    }
}
