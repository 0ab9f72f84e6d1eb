import Foundation
import SwitchboardCLI
import SwitchboardContracts
import SwitchboardRuntime
import SwitchboardTestSupport
import SwitchboardVoice
import Testing

/// The web console in a real browser: headless Chromium loads it from the gateway of a running stack,
/// signs in with the token of the link `make run` prints, starts a conversation, sends a message, and
/// sees the answer stream in and the role board move. A missing browser fails the test (never skips).
@Suite(.serialized, .timeLimit(.minutes(4)))
struct ConsoleTests {
    @Test func theConsoleStreamsAnAnswerAndMovesTheRoleBoard() async throws {
        // Before the stack starts: no browser is a failure with a clear message, not a skip.
        let chromium = try HeadlessBrowser.findExecutable()
        try await ServiceProcesses.withStack(tokensPerSecond: 120) { _, url, authority in
            let token = try await authority.mint(user: "console-ada")
            let origin = url.replacingOccurrences(of: "ws://", with: "http://").replacingOccurrences(
                of: "/ws", with: "")
            let directory = NSTemporaryDirectory() + "switchboard-console-\(UUID().uuidString.prefix(8))"
            let browser = try HeadlessBrowser(
                executable: chromium, url: "\(origin)/?token=\(token)", directory: directory)
            defer { browser.close() }
            let devtools = try await browser.webSocketURL()
            let screenshot = "\(directory)/console.png"
            let admin = try await authority.mint(user: "console-ops", roles: ["admin"])
            let (outcome, flow, system, revisit) = try await DevToolsSession.withPage(browser: devtools) { page in
                let outcome = try await Self.drive(page, screenshot: screenshot)
                let reconnects = try await Self.runOutOfReconnects(page)
                #expect(reconnects.bounds == [1000, 1500, 2250, 7594, 57665, 60000, 60000], "\(reconnects.bounds)")
                #expect(
                    reconnects.exhausted.contains("5 attempts failed") && reconnects.exhausted.contains("Retry now"),
                    "\(reconnects.exhausted)")
                let stopped = try await Self.stopRenameDelete(page)
                #expect(stopped.hasPrefix("stopped"), "run result: \(stopped)")
                let flow = try await Self.runWorkflow(page, screenshot: "\(directory)/console-workflows.png")
                let system = try await Self.watchSystem(page) {
                    try await NotificationTests.post(
                        origin + "/api/v1/notifications", token: admin,
                        body:
                            #"{"userId":"console-ada","type":"success","title":"Deployed","message":"the console works"}"#
                    )
                }
                return (outcome, flow, system, try await Self.revisitRun(page))
            }
            // Signed in from the link: the token left the address bar for localStorage.
            #expect(outcome.address.hasPrefix(origin) && !outcome.address.contains("token="), "\(outcome.address)")
            #expect(outcome.storedToken == token)
            #expect(outcome.user == "console-ada")
            // The board showed the team, and at least one role was seen working, not only idle.
            #expect(outcome.roles.count == 6, "\(outcome.roles)")
            #expect(!outcome.statusesSeen.subtracting(["IDLE"]).isEmpty, "\(outcome.statusesSeen)")
            #expect(outcome.trails.contains { $0.contains("RESPONDING") }, "\(outcome.trails)")
            // The answer streamed in (seen partial at least once) and ended complete, echoing the question.
            #expect(outcome.sawStreaming)
            #expect(outcome.answer.contains(Self.question), "\(outcome.answer)")
            #expect(outcome.progress == "100%")
            // Reconnection is visible: first "reconnecting", then "recovered, no messages missed".
            #expect(
                outcome.bannerKinds.contains("reconnecting") && outcome.bannerKinds.last == "recovered",
                "\(outcome.bannerKinds)")
            #expect(outcome.banner.contains("no messages missed"), "\(outcome.banner)")
            #expect(outcome.trailsAfterReconnect == outcome.trails)
            let png = try Data(contentsOf: URL(fileURLWithPath: screenshot))
            #expect(
                png.starts(with: [0x89, 0x50, 0x4E, 0x47]) && png.count > 10_000, "screenshot of \(png.count) bytes")
            print("console screenshot: \(screenshot)")
            // The REST call behind New: an id of one's own is created, someone else's is refused.
            let port = try #require(Int(origin.split(separator: ":").last ?? ""))
            let id = "console-\(UUID().uuidString.prefix(8))"
            let created = try await FrontDoorTests.post(
                port: port, path: "/api/v1/conversations", token: token, body: #"{"id":"\#(id)","title":"Launch plan"}"#
            )
            #expect(
                created.status == 201 && created.json?["id"]?.stringValue == id
                    && created.json?["title"]?.stringValue == "Launch plan")
            let bob = try await authority.mint(user: "console-bob")
            #expect(
                try await FrontDoorTests.post(
                    port: port, path: "/api/v1/conversations", token: bob, body: #"{"id":"\#(id)"}"#
                ).status == 403)
            // The sample workflow: nodes lit up as they ran, the human_input node asked and was answered,
            // and the condition took the "yes" branch.
            #expect(
                flow.changes.contains("draft:running") && flow.changes.contains("review:waiting"), "\(flow.changes)")
            #expect(flow.status == "completed", "\(flow)")
            #expect(
                flow.nodes["publish"] == "completed" && flow.nodes["shelve"] == "skipped"
                    && flow.nodes["end"] == "completed",
                "\(flow.nodes)")
            #expect(flow.result.contains("Published after review"), "\(flow.result)")
            // The run has a link: Back (from System) and a reload land on it, as it ended.
            #expect(revisit.link.hasPrefix("#/workflows/") && revisit.link.count > "#/workflows/".count, "\(revisit)")
            #expect(revisit.afterBack == "completed" && revisit.afterReload == "completed", "\(revisit)")
            #expect(
                revisit.nodesAfterReload["publish"] == "completed" && revisit.nodesAfterReload["end"] == "completed",
                "\(revisit)")
            #expect(revisit.listed, "the run is in the list of recent runs")
            #expect(revisit.missing.contains("cannot be opened"), "\(revisit)")
            // The System tab lists the six service kinds, the connections, and a notification as it arrives.
            #expect(system.services.count == 6 && system.services.allSatisfy { $0.1 > 0 }, "\(system.services)")
            #expect(system.connections.contains("open connection"), "\(system.connections)")
            #expect(system.notifications.first?.contains("the console works") == true, "\(system.notifications)")
            browser.close()
            try? FileManager.default.removeItem(atPath: "\(directory)/profile")
        }
    }

    static let question = "Plan the launch of a real-time chat product"

    struct Outcome: Sendable {
        var address = ""
        var storedToken = ""
        var user = ""
        var roles: [String] = []
        var statusesSeen: Set<String> = []
        var trails: [String] = []
        var sawStreaming = false
        var answer = ""
        var progress = ""
        var bannerKinds: [String] = []
        var banner = ""
        var trailsAfterReconnect: [String] = []
    }

    /// What a user does: new conversation, type, send; then watches until the answer is complete.
    static func drive(_ page: DevToolsPage, screenshot: String) async throws -> Outcome {
        var outcome = Outcome()
        try await waitFor(page, "the console to sign in", "!document.getElementById('app').hidden")
        outcome.address = try await page.evaluate("location.href").stringValue ?? ""
        outcome.storedToken = try await page.evaluate("localStorage.getItem('sb.token')").stringValue ?? ""
        outcome.user = try await page.evaluate("document.getElementById('user').textContent").stringValue ?? ""

        try await page.evaluate("document.getElementById('new-conversation').click()")
        // The subscription's ROLE_STATUS_SNAPSHOT fills the board with the team.
        try await waitFor(
            page, "a new conversation and its role board",
            "!document.getElementById('message-input').disabled && document.querySelectorAll('#role-board .role').length === 6"
        )
        outcome.roles =
            try await page.evaluate("[...document.querySelectorAll('#role-board .role')].map(r => r.dataset.role)")
            .arrayValue?.compactMap(\.stringValue) ?? []
        try await page.evaluate(
            """
            document.getElementById('message-input').value = \(JSONValue.string(question).jsonText);
            document.getElementById('send').click()
            """)

        // Poll the board and the answer as the run goes, as fast as the page can be asked.
        let probe = """
            JSON.stringify({
              statuses: [...document.querySelectorAll('#role-board .role')].map(r => r.dataset.status),
              answer: document.querySelector('#messages .msg.assistant')?.dataset.status ?? null,
              text: document.querySelector('#messages .msg.assistant .text')?.textContent ?? '',
              progress: document.getElementById('progress-text').textContent,
              running: !document.getElementById('stop').disabled
            })
            """
        let deadline = ContinuousClock.now.advanced(by: .seconds(90))
        while true {
            let text = try await page.evaluate(probe).stringValue ?? "{}"
            let state = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
            for status in state["statuses"]?.arrayValue ?? [] {
                if let status = status.stringValue { outcome.statusesSeen.insert(status) }
            }
            if state["answer"]?.stringValue == "streaming" { outcome.sawStreaming = true }
            outcome.answer = state["text"]?.stringValue ?? ""
            outcome.progress = state["progress"]?.stringValue ?? ""
            // Done when the reply is complete and the collaboration has finished (progress 100%).
            if state["answer"]?.stringValue == "completed", outcome.progress == "100%",
                state["running"]?.boolValue == false
            {
                break
            }
            guard ContinuousClock.now < deadline else {
                throw HeadlessBrowser.Failure(
                    description: "the answer never completed in the console; last state \(text)")
            }
            try await Task.sleep(for: .milliseconds(40))
        }
        outcome.trails =
            try await page.evaluate("[...document.querySelectorAll('#role-board .role-trail')].map(t => t.textContent)")
            .arrayValue?.compactMap(\.stringValue) ?? []

        // A dropped connection: the banner says it is reconnecting, then that nothing was missed.
        // (Every change of the banner is recorded: the reconnect may take only milliseconds.)
        try await page.evaluate(
            """
            window.bannerKinds = [];
            new MutationObserver(() => bannerKinds.push(document.getElementById('banner').dataset.kind))
              .observe(document.getElementById('banner'), { attributes: true, attributeFilter: ['data-kind'] });
            sbConsole.dropConnection()
            """)
        try await waitFor(
            page, "the console to reconnect", "document.getElementById('banner').dataset.kind === 'recovered'")
        outcome.bannerKinds = try await page.evaluate("bannerKinds").arrayValue?.compactMap(\.stringValue) ?? []
        outcome.banner = try await page.evaluate("document.getElementById('banner').textContent").stringValue ?? ""
        // The snapshot after the reconnect updates the board in place: the run's trails stay.
        outcome.trailsAfterReconnect =
            try await page.evaluate(
                "[...document.querySelectorAll('#role-board .role-trail')].map(t => t.textContent)"
            ).arrayValue?.compactMap(\.stringValue) ?? []

        try await saveScreenshot(page, to: screenshot)
        return outcome
    }

    static func saveScreenshot(_ page: DevToolsPage, to path: String) async throws {
        let shot = try await page.call("Page.captureScreenshot", ["format": "png"])
        let data = try #require(Data(base64Encoded: shot["data"]?.stringValue ?? ""))
        try data.write(to: URL(fileURLWithPath: path))
    }

    /// Stop a second run, rename the conversation, delete it; returns the stopped run's result.
    static func stopRenameDelete(_ page: DevToolsPage) async throws -> String {
        try await page.evaluate(
            """
            document.getElementById('message-input').value = 'Research, design and build a plan, step by step';
            document.getElementById('send').click()
            """)
        // COLLABORATION_START clears the first run's result.
        try await waitFor(page, "the second run to start", "document.getElementById('run-result').textContent === ''")
        try await page.evaluate("document.getElementById('stop').click()")
        try await waitFor(page, "the run to stop", "document.getElementById('run-result').textContent !== ''")
        let stopped = try await page.evaluate("document.getElementById('run-result').textContent").stringValue ?? ""

        let id = try await page.evaluate("localStorage.getItem('sb.conversation')").stringValue ?? ""
        let item = "document.querySelector('#conversation-list li[data-id=\"\(id)\"]')"
        try await page.evaluate(
            """
            \(item).querySelector('button[title="rename"]').click();
            const input = \(item).querySelector('input');
            input.value = 'Launch plan';
            input.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter' }))
            """)
        try await waitFor(
            page, "the new title",
            "\(item)?.querySelector('.title')?.textContent === 'Launch plan' && document.getElementById('conversation-title').textContent === 'Launch plan'"
        )
        try await page.evaluate(
            "window.confirm = () => true; \(item).querySelector('button[title=\"delete\"]').click()")
        try await waitFor(
            page, "the conversation to go",
            "\(item) === null && document.getElementById('conversation-title').textContent === 'No conversation'")
        return stopped
    }

    struct FlowOutcome: Sendable {
        var changes: [String] = []
        var status = ""
        var nodes: [String: String] = [:]
        var result = ""
    }

    /// The Workflows tab: run the bundled sample, answer its question, wait for the run's end.
    static func runWorkflow(_ page: DevToolsPage, screenshot: String) async throws -> FlowOutcome {
        var outcome = FlowOutcome()
        try await page.evaluate(
            """
            document.querySelector('#tabs button[data-tab="workflows"]').click();
            window.nodeChanges = [];
            new MutationObserver((changes) => changes.forEach((c) =>
                nodeChanges.push(c.target.dataset.node + ':' + c.target.dataset.status)))
              .observe(document.getElementById('wf-graph'), { subtree: true, attributes: true, attributeFilter: ['data-status'] });
            """)
        // The tab opens its socket; Run is refused (and says so) until it is connected.
        try await waitFor(
            page, "the sample workflow to start",
            "document.getElementById('wf-run').click() || document.getElementById('wf-status').textContent !== 'idle'")
        try await waitFor(
            page, "the human_input node's question", "!document.getElementById('wf-input').hidden",
            timeout: .seconds(40))
        try await page.evaluate(
            "document.getElementById('wf-answer').value = 'yes please'; document.querySelector('#wf-input button').click()"
        )
        try await waitFor(
            page, "the workflow to end",
            "['completed', 'failed', 'stopped'].includes(document.getElementById('wf-status').textContent)",
            timeout: .seconds(30))
        outcome.changes = try await page.evaluate("nodeChanges").arrayValue?.compactMap(\.stringValue) ?? []
        outcome.status = try await page.evaluate("document.getElementById('wf-status').textContent").stringValue ?? ""
        let nodes = try await page.evaluate(
            "Object.fromEntries([...document.querySelectorAll('#wf-graph .node')].map((n) => [n.dataset.node, n.dataset.status]))"
        )
        outcome.nodes = (nodes.objectValue ?? [:]).compactMapValues(\.stringValue)
        outcome.result = try await page.evaluate("document.getElementById('wf-result').textContent").stringValue ?? ""
        try await saveScreenshot(page, to: screenshot)
        return outcome
    }

    struct Revisit: Sendable {
        var link = ""
        var afterBack = ""
        var afterReload = ""
        var nodesAfterReload: [String: String] = [:]
        var listed = false
        var missing = ""
    }

    /// After the System tab: Back to the workflow run's link, a reload of it, then a link to no run.
    static func revisitRun(_ page: DevToolsPage) async throws -> Revisit {
        var revisit = Revisit()
        let status = "document.getElementById('wf-status').textContent"
        try await page.evaluate("history.back()")
        try await waitFor(
            page, "Back to the workflow run",
            "location.hash.startsWith('#/workflows/') && !document.getElementById('tab-workflows').hidden")
        revisit.link = try await page.evaluate("location.hash").stringValue ?? ""
        revisit.afterBack = try await page.evaluate(status).stringValue ?? ""
        try await reload(page)
        try await waitFor(
            page, "the reloaded run",
            "!document.getElementById('tab-workflows').hidden && \(status) === 'completed' && document.querySelector('#wf-runs li.selected') !== null"
        )
        revisit.afterReload = try await page.evaluate(status).stringValue ?? ""
        let nodes = try await page.evaluate(
            "Object.fromEntries([...document.querySelectorAll('#wf-graph .node')].map((n) => [n.dataset.node, n.dataset.status]))"
        )
        revisit.nodesAfterReload = (nodes.objectValue ?? [:]).compactMapValues(\.stringValue)
        revisit.listed =
            try await page.evaluate(
                "document.querySelector('#wf-runs li.selected')?.dataset.run === decodeURIComponent(location.hash.slice('#/workflows/'.length))"
            ).boolValue ?? false
        try await page.evaluate("location.hash = '#/workflows/no-such-run'")
        try await waitFor(page, "the missing run's error", "\(status) === 'unavailable'")
        revisit.missing = try await page.evaluate("document.getElementById('wf-result').textContent").stringValue ?? ""
        return revisit
    }

    struct SystemOutcome: Sendable {
        var services: [(String, Int)] = []
        var connections = ""
        var notifications: [String] = []
    }

    /// The System tab, and a notification sent (by `notify`) while it is open.
    static func watchSystem(_ page: DevToolsPage, notify: @Sendable () async throws -> Int?) async throws
        -> SystemOutcome
    {
        var outcome = SystemOutcome()
        // The rows the tab's own refresh renders, not those of the page's start, when services were starting.
        try await page.evaluate(
            "document.getElementById('services').replaceChildren(); document.querySelector('#tabs button[data-tab=\"system\"]').click()"
        )
        try await waitFor(
            page, "the services and connections",
            "document.querySelectorAll('#services tr').length >= 6 && document.getElementById('connections-total').textContent !== '–'"
        )
        let rows = try await page.evaluate(
            "[...document.querySelectorAll('#services tr')].map((r) => [r.cells[0].textContent, Number(r.cells[1].textContent)])"
        )
        outcome.services = (rows.arrayValue ?? []).compactMap { row in
            guard let name = row[0]?.stringValue, let ready = row[1]?.intValue else { return nil }
            return (name, ready)
        }
        outcome.connections =
            try await page.evaluate("document.getElementById('connections-total').textContent").stringValue ?? ""
        #expect(try await notify() == 202)
        try await waitFor(
            page, "the notification", "document.querySelector('#notifications li[data-type=\"success\"]') !== null")
        outcome.notifications =
            try await page.evaluate("[...document.querySelectorAll('#notifications li')].map((li) => li.textContent)")
            .arrayValue?.compactMap(\.stringValue) ?? []
        return outcome
    }

    /// The Devices tab: bind a device by the code its OTA answer carries, see it listed, rename and
    /// unbind it (the page's confirm and prompt dialogs answered by the test).
    @Test func theDevicesPageBindsRenamesAndUnbindsADevice() async throws {
        let chromium = try HeadlessBrowser.findExecutable()
        try await ServiceProcesses.withStack { _, url, authority in
            let token = try await authority.mint(user: "console-devices-\(UUID().uuidString.prefix(6))")
            let origin = url.replacingOccurrences(of: "ws://", with: "http://").replacingOccurrences(
                of: "/ws", with: "")
            let deviceID = VoiceFlowTests.deviceID()
            let ota = try await DeviceActivationFlowTests.ota(origin, deviceID: deviceID, clientID: "console-device")
            let code = try #require((ota.json["activation"] as? [String: Any])?["code"] as? String)
            let directory = NSTemporaryDirectory() + "switchboard-console-\(UUID().uuidString.prefix(8))"
            let browser = try HeadlessBrowser(
                executable: chromium, url: "\(origin)/?token=\(token)", directory: directory)
            defer { browser.close() }
            let devtools = try await browser.webSocketURL()
            let (listed, renamed, left) = try await DevToolsSession.withPage(browser: devtools) { page in
                try await Self.waitFor(page, "the console", "!document.getElementById('app').hidden")
                try await page.evaluate(
                    """
                    window.confirm = () => true; window.prompt = () => 'Kitchen speaker';
                    document.querySelector('#tabs button[data-tab="devices"]').click();
                    document.getElementById('device-code').value = '\(code)';
                    document.querySelector('#device-bind button').click();
                    """)
                let row = "document.querySelector('#devices tr[data-device=\"\(deviceID)\"]')"
                try await Self.waitFor(page, "the bound device's row", "\(row) !== null")
                let listed = try await page.evaluate("\(row).textContent").stringValue ?? ""
                try await page.evaluate("\(row).querySelectorAll('button')[0].click()")
                try await Self.waitFor(
                    page, "the new name",
                    "\(row) && \(row).querySelector('.device-name').textContent === 'Kitchen speaker'")
                let renamed =
                    try await page.evaluate("\(row).querySelector('.device-name').textContent").stringValue ?? ""
                try await page.evaluate("\(row).querySelectorAll('button')[1].click()")
                try await Self.waitFor(
                    page, "the row to go", "\(row) === null && !document.getElementById('devices-empty').hidden")
                return (
                    listed, renamed,
                    try await page.evaluate("document.querySelectorAll('#devices tr').length").intValue ?? -1
                )
            }
            #expect(listed.contains(deviceID) && listed.contains("offline"), "\(listed)")
            #expect(renamed == "Kitchen speaker")
            #expect(left == 0)
            // The page's unbind really unbound: OTA hands the device a new code, not a token.
            let again = try await DeviceActivationFlowTests.ota(origin, deviceID: deviceID, clientID: "console-device")
            #expect(again.json["activation"] != nil)
        }
    }

    /// Links and the back button, as people use them: a link to a conversation opens it after signing
    /// in, choosing another updates the address, Back returns, a reload lands on it; a message typed and
    /// sent the instant after New (before the subscription is ready) is sent once it is, and Enter with
    /// no conversation open starts one; a link to someone else's conversation shows an error only.
    @Test func deepLinksTheBackButtonAndMessagesTypedBeforeTheConversationIsReady() async throws {
        let chromium = try HeadlessBrowser.findExecutable()
        try await ServiceProcesses.withStack { _, url, authority in
            let origin = url.replacingOccurrences(of: "ws://", with: "http://").replacingOccurrences(
                of: "/ws", with: "")
            let port = try #require(Int(origin.split(separator: ":").last ?? ""))
            let suffix = UUID().uuidString.prefix(8)
            let ada = try await authority.mint(user: "links-ada-\(suffix)")
            let bob = try await authority.mint(user: "links-bob-\(suffix)")
            let alpha = "alpha-\(suffix)"
            let beta = "beta-\(suffix)"
            let secret = "secret-\(suffix)"
            for (id, title, owner) in [(alpha, "Alpha", ada), (beta, "Beta", ada), (secret, "Bob's secret plans", bob)]
            {
                let created = try await FrontDoorTests.post(
                    port: port, path: "/api/v1/conversations", token: owner,
                    body: #"{"id":"\#(id)","title":"\#(title)"}"#)
                #expect(created.status == 201)
            }
            let directory = NSTemporaryDirectory() + "switchboard-console-\(UUID().uuidString.prefix(8))"
            // A shared link, opened signed out: the sign-in form, then the conversation it names.
            let browser = try HeadlessBrowser(
                executable: chromium, url: "\(origin)/#/conversations/\(alpha)", directory: directory)
            defer { browser.close() }
            let devtools = try await browser.webSocketURL()
            let opened = { @Sendable (id: String, title: String) in
                """
                location.hash === '#/conversations/\(id)' && document.getElementById('conversation-title').textContent === '\(title)'
                  && document.querySelector('#conversation-list li.selected')?.dataset.id === '\(id)'
                  && document.querySelectorAll('#role-board .role').length === 6
                """
            }
            let (early, started, refused) = try await DevToolsSession.withPage(browser: devtools) { page in
                try await Self.waitFor(page, "the sign-in form", "!document.getElementById('sign-in').hidden")
                try await page.evaluate(
                    """
                    document.getElementById('token-input').value = \(JSONValue.string(ada).jsonText);
                    document.querySelector('#sign-in-form button').click()
                    """)
                try await Self.waitFor(page, "the linked conversation after sign-in", opened(alpha, "Alpha"))
                // Choosing another changes the address; Back returns to the first; a reload stays there.
                try await page.evaluate("document.querySelector('#conversation-list li[data-id=\"\(beta)\"]').click()")
                try await Self.waitFor(page, "the chosen conversation", opened(beta, "Beta"))
                try await page.evaluate("history.back()")
                try await Self.waitFor(page, "Back to the first conversation", opened(alpha, "Alpha"))
                try await Self.reload(page)
                try await Self.waitFor(page, "the reloaded conversation", opened(alpha, "Alpha"))

                // New, and at once (before its role snapshot) a question typed and sent with Enter.
                try await page.evaluate(
                    "document.getElementById('new-conversation').click(); document.getElementById('message-input').focus()"
                )
                try await Self.typeAndPressEnter(page, Self.question)
                let early = try await Self.waitForAnswer(page, to: Self.question, notIn: [alpha, beta])
                // No conversation open: Enter starts one.
                try await page.evaluate("location.hash = '#/conversations'")
                try await Self.waitFor(
                    page, "no conversation",
                    "document.getElementById('conversation-title').textContent === 'No conversation' && document.querySelectorAll('#messages .msg').length === 0"
                )
                try await page.evaluate("document.getElementById('message-input').focus()")
                try await Self.typeAndPressEnter(page, "Summarise the launch in one line")
                let started = try await Self.waitForAnswer(
                    page, to: "Summarise the launch in one line", notIn: [alpha, beta, early.conversation])

                // Someone else's conversation by its link: an error, and nothing of it.
                try await page.evaluate("location.hash = '#/conversations/\(secret)'")
                try await Self.waitFor(
                    page, "the refusal",
                    "document.getElementById('conversation-title').textContent === 'Conversation unavailable'")
                let refused =
                    try await page.evaluate(
                        """
                        JSON.stringify({ page: document.getElementById('app').textContent,
                          notice: document.querySelector('#messages .msg.notice')?.textContent ?? '',
                          messages: document.querySelectorAll('#messages .msg:not(.notice)').length,
                          roles: document.querySelectorAll('#role-board .role').length })
                        """
                    ).stringValue ?? "{}"
                return (early, started, refused)
            }
            #expect(early.bubbles == [Self.question], "\(early)")
            #expect(early.answer.contains(Self.question), "\(early)")
            #expect(started.bubbles == ["Summarise the launch in one line"], "\(started)")
            #expect(started.answer.contains("Summarise the launch"), "\(started)")
            let refusal = try JSONDecoder().decode(JSONValue.self, from: Data(refused.utf8))
            #expect(refusal["notice"]?.stringValue?.contains(secret) == true, "\(refused)")
            #expect(refusal["page"]?.stringValue?.contains("Bob's secret plans") == false, "\(refused)")
            #expect(refusal["messages"]?.intValue == 0 && refusal["roles"]?.intValue == 0, "\(refused)")
            // The questions went to the new conversations only: the one open when New was pressed has none.
            let messages = try await FrontDoorTests.get(
                port: port, path: "/api/v1/conversations/\(alpha)/messages", token: ada)
            #expect(
                messages.status == 200 && messages.json?["messages"]?.arrayValue?.isEmpty == true,
                "\(String(describing: messages.json))")
            browser.close()
            try? FileManager.default.removeItem(atPath: "\(directory)/profile")
        }
    }

    /// Typed as a user types (into the focused element), then Enter.
    static func typeAndPressEnter(_ page: DevToolsPage, _ text: String) async throws {
        _ = try await page.call("Input.insertText", ["text": .string(text)])
        for type in ["keyDown", "keyUp"] {
            _ = try await page.call(
                "Input.dispatchKeyEvent",
                [
                    "type": .string(type), "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": .number(13),
                    "nativeVirtualKeyCode": .number(13),
                ])
        }
    }

    struct EarlyMessage: Sendable {
        var conversation = ""
        var bubbles: [String] = []
        var answer = ""
    }

    /// Waits until a new conversation (named in the address, none of `earlier`) holds the question's
    /// bubble and a completed answer.
    static func waitForAnswer(_ page: DevToolsPage, to question: String, notIn earlier: [String]) async throws
        -> EarlyMessage
    {
        try await waitFor(
            page, "the answer to “\(question)”",
            """
            [...document.querySelectorAll('#messages .msg.assistant')].some((m) => m.dataset.status === 'completed'
              && m.textContent.includes(\(JSONValue.string(question).jsonText)))
              && !\(JSONValue.array(earlier.map { .string("#/conversations/" + $0) }).jsonText).includes(location.hash)
            """, timeout: .seconds(60))
        let state =
            try await page.evaluate(
                """
                JSON.stringify({ hash: location.hash,
                  bubbles: [...document.querySelectorAll('#messages .msg.user .text')].map((t) => t.textContent),
                  answer: [...document.querySelectorAll('#messages .msg.assistant .text')].map((t) => t.textContent).join(' ') })
                """
            ).stringValue ?? "{}"
        let json = try JSONDecoder().decode(JSONValue.self, from: Data(state.utf8))
        return EarlyMessage(
            conversation: String((json["hash"]?.stringValue ?? "").dropFirst("#/conversations/".count)),
            bubbles: json["bubbles"]?.arrayValue?.compactMap(\.stringValue) ?? [],
            answer: json["answer"]?.stringValue ?? "")
    }

    /// The Devices page, opened by its link while a bound device is online after speaking one turn: the
    /// turn's latency per stage (docs/voice.md#latency), as the voice-worker timed it.
    @Test func theDevicesPageShowsAnOnlineDevicesLastTurnByStage() async throws {
        let chromium = try HeadlessBrowser.findExecutable()
        try await VoiceFlowTests.withVoiceStack { stack in
            let token = try await stack.authority.mint(user: "console-voice-\(UUID().uuidString.prefix(6))")
            let deviceID = VoiceFlowTests.deviceID()
            let clientID = UUID().uuidString
            let (url, deviceToken) = try await DeviceActivationFlowTests.bind(
                stack.httpBase, deviceID: deviceID, clientID: clientID, user: token)
            let speech = try await DeviceSimulator.speech("good morning")
            let directory = NSTemporaryDirectory() + "switchboard-console-\(UUID().uuidString.prefix(8))"
            let page = "\(stack.httpBase)/?token=\(token)#/devices"
            let (shown, _) = try await DeviceSimulator.connect(
                url: url, token: deviceToken, deviceID: deviceID, clientID: clientID
            ) { device -> [String: String] in
                let session = try await VoiceFlowTests.hello(device)
                let heard = try await VoiceFlowTests.sayAndHear(device, session: session, speech)
                #expect(heard.contains { $0.audio != nil }, "the device heard no answer")
                let browser = try HeadlessBrowser(executable: chromium, url: page, directory: directory)
                defer { browser.close() }
                let devtools = try await browser.webSocketURL()
                return try await DevToolsSession.withPage(browser: devtools) { page in
                    let row = "document.querySelector('#devices tr[data-device=\"\(deviceID)\"]')"
                    try await Self.waitFor(
                        page, "the online device's last turn",
                        "!document.getElementById('tab-devices').hidden && \(row).dataset.online === 'true' && \(row).querySelector('.last-turn .stage') !== null"
                    )
                    let stages = try await page.evaluate(
                        "Object.fromEntries([...\(row).querySelectorAll('.last-turn .stage')].map((s) => [s.dataset.stage, s.textContent]))"
                    )
                    return (stages.objectValue ?? [:]).compactMapValues(\.stringValue)
                }
            }
            let stages = try #require(shown)
            // Each stage the spoken turn went through, labelled and measured.
            #expect(
                Set(stages.keys) == ["endOfUtteranceMs", "asrMs", "llmFirstTokenMs", "ttsFirstAudioMs", "totalMs"],
                "\(stages)")
            let labels = [
                "endOfUtteranceMs": "end of speech", "asrMs": "ASR", "llmFirstTokenMs": "first token",
                "ttsFirstAudioMs": "first audio", "totalMs": "total",
            ]
            for (stage, text) in stages {
                let label = labels[stage] ?? "?"
                #expect(
                    text.hasPrefix(label + " ") && (text.hasSuffix(" ms") || text.hasSuffix(" s")), "\(stage): \(text)")
            }
            try? FileManager.default.removeItem(atPath: "\(directory)/profile")
        }
    }

    /// Seed 000's reconnection: the bound grows ×1.5 from 1 s to at most 60 s; after 5 failed attempts
    /// the banner offers a manual retry, which reconnects and recovers.
    static func runOutOfReconnects(_ page: DevToolsPage) async throws -> (bounds: [Int], exhausted: String) {
        let bounds =
            try await page.evaluate("[0, 1, 2, 5, 10, 11, 20].map(n => Math.round(sbConsole.reconnectPolicy.bound(n)))")
            .arrayValue?.compactMap(\.intValue) ?? []
        try await page.evaluate("sbConsole.breakLink()")
        // Five refused attempts, waiting at most 1, 1.5, 2.25, 3.4 and 5.1 s before them.
        try await waitFor(
            page, "the reconnect attempts to run out", "document.querySelector('#banner button') !== null",
            timeout: .seconds(30))
        let exhausted = try await page.evaluate("document.getElementById('banner').textContent").stringValue ?? ""
        try await page.evaluate("sbConsole.restoreLink(); document.querySelector('#banner button').click()")
        try await waitFor(
            page, "the manual retry to reconnect", "document.getElementById('banner').dataset.kind === 'recovered'")
        return (bounds, exhausted)
    }

    /// Reloads the page and waits for the new one: until the old one is gone it still answers.
    static func reload(_ page: DevToolsPage) async throws {
        try await page.evaluate("window.sbBeforeReload = true; location.reload()")
        try await waitFor(
            page, "the reloaded page", "window.sbBeforeReload === undefined && document.readyState === 'complete'")
    }

    static func waitFor(_ page: DevToolsPage, _ what: String, _ condition: String, timeout: Duration = .seconds(20))
        async throws
    {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while ContinuousClock.now < deadline {
            // Not there yet (the page still loading) counts as false.
            if try await page.evaluate("(() => { try { return Boolean(\(condition)) } catch { return false } })()")
                .boolValue == true
            {
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        let banner = try? await page.evaluate(
            "document.getElementById('banner').textContent + ' ' + document.getElementById('sign-in-error').textContent"
        )
        throw HeadlessBrowser.Failure(
            description: "timed out waiting for \(what) (\(condition)); page says: \(banner?.stringValue ?? "?")")
    }
}

extension JSONValue {
    /// The value as JSON text: a safe literal to put into a script.
    fileprivate var jsonText: String {
        (try? JSONEncoder().encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "null"
    }
}
