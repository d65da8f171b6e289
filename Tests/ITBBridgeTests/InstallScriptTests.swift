import Foundation
import ITBBridge
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Install: scripts/install.sh with DESTDIR and PREFIX")
struct InstallScriptTests {
    /// Where `swift build --build-tests` put itb-bridged and itbctl.
    static var binDirectory: String {
        get throws { try TestExecutables.directory().path }
    }

    /// Runs the install script; as root, as `nobody` through setpriv (with DESTDIR set it must not
    /// need root), when that user can read the work tree.
    static func install(_ action: String, destdir: String, prefix: String) throws -> (status: Int32, output: String) {
        let script = repositoryRoot + "/scripts/install.sh"
        let environment = ["DESTDIR": destdir, "PREFIX": prefix, "ITB_BIN_DIR": try binDirectory]
        if geteuid() == 0, let setpriv = which("setpriv"), let bash = which("bash") {
            let drop = ["--reuid=65534", "--regid=65534", "--clear-groups"]
            let probe = try runCommand(setpriv, drop + ["test", "-r", script, "-a", "-x", try binDirectory + "/itb-bridged"])
            if probe.status == 0 {
                return try runCommand(setpriv, drop + [bash, script, action], environment: environment)
            }
        }
        return try runCommand("/bin/bash", [script, action], environment: environment)
    }

    static func mode(_ path: String) -> UInt32? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return UInt32(st.st_mode & 0o7777)
    }

    @Test("PREFIX=/usr: binaries, unit, sysusers, udev rules, docs and config where a distribution puts them; uninstall removes them and keeps an edited config")
    func layOutAndRemove() throws {
        let scratch = try ScratchDirectory("install")
        defer { scratch.remove() }
        // Writable by nobody, who runs the script when the tests run as root.
        chmod(scratch.path, 0o777)
        let root = scratch.path + "/root"
        let installed = try Self.install("install", destdir: root, prefix: "/usr")
        #expect(installed.status == 0, "install failed: \(installed.output)")

        let expected: [(String, UInt32)] = [
            ("/usr/bin/itb-bridged", 0o755),
            ("/usr/bin/itbctl", 0o755),
            ("/usr/bin/itb-forward", 0o755),
            ("/usr/lib/systemd/system/itb-bridged.service", 0o644),
            ("/usr/lib/systemd/system/itb-forward.service", 0o644),
            ("/usr/lib/sysusers.d/itb-bridge.conf", 0o644),
            ("/usr/lib/udev/rules.d/60-itb-programmer.rules", 0o644),
            ("/usr/share/doc/itb-bridge/README.md", 0o644),
            ("/usr/share/doc/itb-bridge/itb-bridged.conf", 0o644),
            ("/usr/share/doc/itb-bridge/itb-forward.conf", 0o644),
            ("/etc/itb-bridge/itb-bridged.conf", 0o644),
            ("/etc/itb-bridge/itb-forward.conf", 0o644),
        ]
        for (path, mode) in expected {
            #expect(Self.mode(root + path) == mode, "\(path): mode \(Self.mode(root + path).map { String($0, radix: 8) } ?? "missing"), wanted \(String(mode, radix: 8))")
        }
        let unit = try String(contentsOfFile: root + "/usr/lib/systemd/system/itb-bridged.service", encoding: .utf8)
        #expect(unit.contains("\nExecStart=/usr/bin/itb-bridged --config /etc/itb-bridge/itb-bridged.conf\n"))
        let forwardUnit = try String(contentsOfFile: root + "/usr/lib/systemd/system/itb-forward.service", encoding: .utf8)
        #expect(forwardUnit.contains("\nExecStart=/usr/bin/itb-forward --config /etc/itb-bridge/itb-forward.conf\n"))
        let built = try FileManager.default.attributesOfItem(atPath: try Self.binDirectory + "/itb-bridged")[.size] as? Int
        let copied = try FileManager.default.attributesOfItem(atPath: root + "/usr/bin/itb-bridged")[.size] as? Int
        #expect(built == copied)
        let config = try String(contentsOfFile: root + "/etc/itb-bridge/itb-bridged.conf", encoding: .utf8)
        #expect(try ConfigurationFile.parse(config) == BridgeConfiguration(), "the installed config parses, all defaults")

        // A local edit survives a second install and the uninstall.
        let edited = config + "\nlog_level = debug\n"
        try edited.write(toFile: root + "/etc/itb-bridge/itb-bridged.conf", atomically: false, encoding: .utf8)
        let again = try Self.install("install", destdir: root, prefix: "/usr")
        #expect(again.status == 0, "second install failed: \(again.output)")
        #expect(try String(contentsOfFile: root + "/etc/itb-bridge/itb-bridged.conf", encoding: .utf8) == edited,
                "an existing config is never overwritten")
        let removed = try Self.install("uninstall", destdir: root, prefix: "/usr")
        #expect(removed.status == 0, "uninstall failed: \(removed.output)")
        for (path, _) in expected where path != "/etc/itb-bridge/itb-bridged.conf" {
            #expect(access(root + path, F_OK) != 0, "\(path) is removed")
        }
        #expect(access(root + "/etc/itb-bridge/itb-bridged.conf", F_OK) == 0, "the edited config is kept")
        #expect(removed.output.contains("has local changes"))

        // An unedited config goes with the rest.
        try FileManager.default.removeItem(atPath: root + "/etc/itb-bridge/itb-bridged.conf")
        #expect(try Self.install("install", destdir: root, prefix: "/usr").status == 0)
        #expect(try Self.install("uninstall", destdir: root, prefix: "/usr").status == 0)
        #expect(access(root + "/etc/itb-bridge/itb-bridged.conf", F_OK) != 0)
        #expect(access(root + "/etc/itb-bridge", F_OK) != 0)
    }

    @Test("the default PREFIX, /usr/local: the unit runs the binary from there")
    func usrLocal() throws {
        let scratch = try ScratchDirectory("install-local")
        defer { scratch.remove() }
        chmod(scratch.path, 0o777)
        let root = scratch.path + "/root"
        let installed = try Self.install("install", destdir: root, prefix: "/usr/local")
        #expect(installed.status == 0, "install failed: \(installed.output)")
        #expect(Self.mode(root + "/usr/local/bin/itb-bridged") == 0o755)
        #expect(Self.mode(root + "/usr/local/lib/udev/rules.d/60-itb-programmer.rules") == 0o644)
        let unit = try String(contentsOfFile: root + "/usr/local/lib/systemd/system/itb-bridged.service", encoding: .utf8)
        #expect(unit.contains("\nExecStart=/usr/local/bin/itb-bridged --config /etc/itb-bridge/itb-bridged.conf\n"))
        #expect(unit.contains("Documentation=file:/usr/local/share/doc/itb-bridge/README.md"))
    }

    @Test("a missing binary or a relative PREFIX is refused with a message that says what to do")
    func refusals() throws {
        let scratch = try ScratchDirectory("install-refused")
        defer { scratch.remove() }
        let script = repositoryRoot + "/scripts/install.sh"
        let relative = try runCommand("/bin/bash", [script], environment: ["DESTDIR": scratch.path + "/root", "PREFIX": "usr"])
        #expect(relative.status != 0)
        #expect(relative.output.contains("PREFIX must be an absolute path"))
        let missing = try runCommand("/bin/bash", [script],
                                     environment: ["DESTDIR": scratch.path + "/root", "PREFIX": "/usr", "ITB_BIN_DIR": scratch.path])
        #expect(missing.status != 0)
        #expect(missing.output.contains("set ITB_BIN_DIR"))
        #expect(access(scratch.path + "/root/usr/bin/itb-bridged", F_OK) != 0)
    }

    @Test("with the default USB ids install warns loudly that any FT232R will be claimed; with the site's match lines in the config the udev rule is made from them")
    func siteAdapterIDsInOnePlace() throws {
        let scratch = try ScratchDirectory("install-usb")
        defer { scratch.remove() }
        chmod(scratch.path, 0o777)
        let plain = scratch.path + "/plain"
        let warned = try Self.install("install", destdir: plain, prefix: "/usr")
        #expect(warned.status == 0, "\(warned.output)")
        #expect(warned.output.contains("WARNING") && warned.output.contains("0403:6001") && warned.output.contains("label printer"), "\(warned.output)")
        let shipped = try String(contentsOfFile: repositoryRoot + "/udev-rules/60-itb-programmer.rules", encoding: .utf8)
        #expect(try String(contentsOfFile: plain + "/usr/lib/udev/rules.d/60-itb-programmer.rules", encoding: .utf8) == shipped)

        let site = scratch.path + "/site"
        try FileManager.default.createDirectory(atPath: site + "/etc/itb-bridge", withIntermediateDirectories: true)
        try "# our programmers\nmatch = 1A86:7523:PGM0042\nmatch = 0403:6015\n#match = 0403:6001\n"
            .write(toFile: site + "/etc/itb-bridge/itb-bridged.conf", atomically: true, encoding: .utf8)
        chmod(site, 0o777)
        chmod(site + "/etc", 0o777)
        chmod(site + "/etc/itb-bridge", 0o777)
        chmod(site + "/etc/itb-bridge/itb-bridged.conf", 0o666)
        let matched = try Self.install("install", destdir: site, prefix: "/usr")
        #expect(matched.status == 0, "\(matched.output)")
        #expect(!matched.output.contains("WARNING"), "\(matched.output)")
        let rule = try String(contentsOfFile: site + "/usr/lib/udev/rules.d/60-itb-programmer.rules", encoding: .utf8)
        #expect(rule.contains(#"SUBSYSTEMS=="usb", ATTRS{idVendor}=="1a86", ATTRS{idProduct}=="7523", ATTRS{serial}=="PGM0042", GOTO="itb_programmer""#), "\(rule)")
        #expect(rule.contains(#"SUBSYSTEMS=="usb", ATTRS{idVendor}=="0403", ATTRS{idProduct}=="6015", GOTO="itb_programmer""#), "\(rule)")
        #expect(!rule.contains(#"ATTRS{idProduct}=="6001""#), "the generic default is gone: \(rule)")
        // The daemon reads the same lines.
        let configuration = try ConfigurationFile.parse(try String(contentsOfFile: site + "/etc/itb-bridge/itb-bridged.conf", encoding: .utf8))
        #expect(configuration.matchRules.map(\.description) == ["1a86:7523:PGM0042", "0403:6015"])
    }
}
