import Foundation
import ITBBridge
import Testing

@Suite("systemd: the shipped default config file")
struct SystemdConfigFileTests {
    static var shipped: String {
        get throws { try String(contentsOfFile: repositoryRoot + "/systemd/itb-bridged.conf", encoding: .utf8) }
    }

    /// Every key ConfigurationFile knows, read from its source (`case "key":`).
    static var knownKeys: [String] {
        get throws {
            let source = try String(contentsOfFile: repositoryRoot + "/Sources/ITBBridge/ConfigurationFile.swift", encoding: .utf8)
            return source.matches(of: /case "([a-z_]+)":/).map { String($0.output.1) }
        }
    }

    @Test("as shipped (everything commented out) it parses to the defaults")
    func parsesToDefaults() throws {
        #expect(try ConfigurationFile.parse(Self.shipped) == BridgeConfiguration())
    }

    @Test("every setting ConfigurationFile knows is documented, with its default")
    func documentsEveryKey() throws {
        let keys = try Self.knownKeys
        #expect(keys.count >= 20, "read the keys from ConfigurationFile.swift: \(keys)")
        let text = try Self.shipped
        for key in keys {
            #expect(text.contains("\n#\(key) = "), "systemd/itb-bridged.conf has a commented `#\(key) = …` line")
            #expect(text.contains("\n# \(key): "), "systemd/itb-bridged.conf explains `\(key)`")
        }
    }

    @Test("uncommented, every line parses, and the values shown are the defaults (examples aside)")
    func uncommentedValuesAreDefaults() throws {
        let uncommented = try Self.shipped.split(separator: "\n", omittingEmptySubsequences: false).map { line -> Substring in
            line.wholeMatch(of: /#[a-z_]+ = .*/) != nil ? line.dropFirst() : line
        }.joined(separator: "\n")
        var parsed = try ConfigurationFile.parse(uncommented)
        // Settings without a default show an example.
        #expect(!parsed.devices.isEmpty && parsed.socketGroup != nil && parsed.captureDirectory != nil)
        parsed.devices = []
        parsed.socketGroup = nil
        parsed.captureDirectory = nil
        #expect(parsed == BridgeConfiguration())
    }

    @Test("the unit, the config and the udev rule agree on paths, user and groups")
    func filesAgree() throws {
        let unit = try String(contentsOfFile: repositoryRoot + "/systemd/itb-bridged.service", encoding: .utf8)
        let sysusers = try String(contentsOfFile: repositoryRoot + "/systemd/itb-bridge.sysusers", encoding: .utf8)
        let rules = try String(contentsOfFile: repositoryRoot + "/udev-rules/60-itb-programmer.rules", encoding: .utf8)
        let defaults = BridgeConfiguration()
        #expect(defaults.socketPath.hasPrefix("/run/itb-bridge/") && unit.contains("\nRuntimeDirectory=itb-bridge\n"))
        #expect(defaults.stateDirectory == "/var/lib/itb-bridge" && unit.contains("\nStateDirectory=itb-bridge\n"))
        #expect(unit.contains("\nUser=itb-bridge\n") && sysusers.contains("\nu itb-bridge "))
        #expect(unit.contains("\nSupplementaryGroups=itb-programmer\n") && sysusers.contains("\ng itb-programmer "))
        #expect(rules.contains("GROUP=\"itb-programmer\""))
        #expect(rules.contains("ENV{SYSTEMD_WANTS}+=\"itb-bridged.service\""))
        #expect(unit.contains("--config /etc/itb-bridge/itb-bridged.conf") && unit.contains("\nConfigurationDirectory=itb-bridge\n"))
    }
}
