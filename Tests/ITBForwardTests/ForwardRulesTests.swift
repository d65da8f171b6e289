// The forwarder's decisions as plain values: batches, back-off, position, URL and settings.

import Foundation
import ITBForward
import ITBTestSupport
import Testing

@Suite struct ForwardRulesTests {
    @Test func aBatchIsCompleteAtItsSizeOrOnceItsFirstEventWaitedTheDelay() {
        let rule = BatchRule(maxEvents: 3, maxDelay: .milliseconds(200))
        #expect(!rule.isComplete(count: 0, age: .seconds(10)))
        #expect(!rule.isComplete(count: 2, age: .milliseconds(199)))
        #expect(rule.isComplete(count: 2, age: .milliseconds(200)))
        #expect(rule.isComplete(count: 3, age: .zero))
        #expect(BatchRule(maxEvents: 0).maxEvents == 1)
    }

    @Test func backOffDoublesUpToItsMaximumAndStartsOverAfterASuccess() {
        var backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(1))
        #expect(backoff.failed() == .milliseconds(100))
        #expect(backoff.failed() == .milliseconds(200))
        #expect(backoff.failed() == .milliseconds(400))
        #expect(backoff.failed() == .milliseconds(800))
        #expect(backoff.failed() == .seconds(1))
        for _ in 0..<100 { _ = backoff.failed() }
        #expect(backoff.failed() == .seconds(1))
        backoff.succeeded()
        #expect(backoff.failed() == .milliseconds(100))
    }

    @Test func thePositionRefusesAnEventAtOrBelowWhatWasTakenAndRollsBackToTheCommittedOne() throws {
        var position = StreamPosition(committed: 10)
        #expect(throws: StreamPosition.OutOfOrder(id: 10, after: 10)) { try position.take(10) }
        try position.take(11)
        try position.take(20)
        #expect(throws: StreamPosition.OutOfOrder(id: 15, after: 20)) { try position.take(15) }
        position.rollBack()
        #expect(position.taken == 10)
        try position.take(11)
        position.commit(through: 11)
        #expect(position.committed == 11)
        #expect(throws: StreamPosition.OutOfOrder.self) { try position.take(11) }
    }

    @Test func aLibpqURLNamesATCPHostOrAUnixSocketDirectory() throws {
        let tcp = try PostgresLocation(url: "postgresql://itb@db.clinic.example:6543/reports?sslmode=verify-full")
        #expect(tcp.endpoint == .tcp(host: "db.clinic.example", port: 6543))
        #expect(tcp.user == "itb" && tcp.database == "reports" && tcp.sslMode == .verifyFull)
        let socket = try PostgresLocation(url: "postgresql://forwarder@/itb?host=/run/postgresql")
        #expect(socket.endpoint == .unixSocket(directory: "/run/postgresql", port: 5432))
        #expect(socket.socketFile == "/run/postgresql/.s.PGSQL.5432")
        let encoded = try PostgresLocation(url: "postgres://%2Fvar%2Frun%2Fpg:5433/itb")
        #expect(encoded.endpoint == .unixSocket(directory: "/var/run/pg", port: 5433))
        #expect(encoded.user == "itb_forward")
        let ipv6 = try PostgresLocation(url: "postgresql://itb@[::1]:5432/itb")
        #expect(ipv6.endpoint == .tcp(host: "::1", port: 5432))
    }

    @Test func aPasswordInTheURLIsRefusedWithWhereToPutIt() {
        for url in ["postgresql://itb:secret@db/itb", "postgresql://itb@db/itb?password=secret"] {
            #expect {
                try PostgresLocation(url: url)
            } throws: { error in
                "\(error)".contains("--password-file")
            }
        }
        #expect(throws: PostgresLocation.ParseError.self) { try PostgresLocation(url: "mysql://db/itb") }
        #expect(throws: PostgresLocation.ParseError.self) { try PostgresLocation(url: "postgresql://itb@db/itb?sslmode=allow") }
        #expect(throws: PostgresLocation.ParseError.self) { try PostgresLocation(url: "postgresql://itb@/itb") }
    }

    @Test func tlsDefaultsToVerifyFullOverTCPAndTheFlagWinsOverTheURL() throws {
        var settings = ForwardSettings()
        settings.postgres = try PostgresLocation(url: "postgresql://itb@db/itb")
        #expect(settings.effectiveTLS == .verifyFull)
        settings.postgres = try PostgresLocation(url: "postgresql://itb@db/itb?sslmode=require")
        #expect(settings.effectiveTLS == .require)
        settings.tls = .disable
        #expect(settings.effectiveTLS == .disable)
        settings.tls = nil
        settings.postgres = try PostgresLocation(url: "postgresql://itb@/itb?host=/run/postgresql")
        #expect(settings.effectiveTLS == .disable)
    }

    @Test func theConfigFileSetsEverySettingAndNamesTheLineOfAMistake() throws {
        var settings = ForwardSettings()
        try settings.apply(configFile: """
            # itb-forward
            socket = /run/itb-bridge/api.sock
            postgres = postgresql://itb@db.clinic.example/itb
            bridge_id = ws-17   # the workstation
            password_file = /etc/itb-bridge/postgres-password
            tls = verify-full
            tls_ca_file = /etc/itb-bridge/ca.pem
            batch_max_events = 1000
            batch_max_delay_ms = 50
            log_level = debug
            """)
        #expect(settings.bridgeID == "ws-17" && settings.effectiveBridgeID == "ws-17")
        #expect(settings.postgres?.endpoint == .tcp(host: "db.clinic.example", port: 5432))
        #expect(settings.tls == .verifyFull && settings.tlsCAFile == "/etc/itb-bridge/ca.pem")
        #expect(settings.batch == BatchRule(maxEvents: 1000, maxDelay: .milliseconds(50)))
        #expect(settings.passwordFile == "/etc/itb-bridge/postgres-password" && settings.logLevel == "debug")
        #expect {
            try settings.apply(configFile: "socket = /tmp/a\nbatch_size = 3\n")
        } throws: { error in
            "\(error)".hasPrefix("config line 2: unknown key `batch_size`")
        }
        #expect {
            try settings.apply(configFile: "postgres = postgresql://itb:pw@db/itb")
        } throws: { error in
            "\(error)".contains("config line 1: a password in the URL is refused")
        }
    }

    @Test func thePasswordComesFromItsFileOrFromSystemdCredentials() throws {
        let directory = try ScratchDirectory("forward-password")
        defer { directory.remove() }
        try "from-credential\n".write(toFile: directory.path + "/postgres-password", atomically: true, encoding: .utf8)
        try "from-file\nsecond line\n".write(toFile: directory.path + "/password", atomically: true, encoding: .utf8)
        var settings = ForwardSettings()
        #expect(try settings.password(environment: [:]) == nil)
        #expect(try settings.password(environment: ["CREDENTIALS_DIRECTORY": directory.path]) == "from-credential")
        settings.passwordFile = directory.path + "/password"
        #expect(try settings.password(environment: ["CREDENTIALS_DIRECTORY": directory.path]) == "from-file")
        settings.passwordFile = directory.path + "/missing"
        #expect {
            try settings.password(environment: [:])
        } throws: { error in
            "\(error)".contains("cannot read the password file")
        }
    }
}
