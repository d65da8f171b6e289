#!/usr/bin/env python3
"""The checks of scripts/vm-test.sh, run against a Debian 12 guest under QEMU (issue 14).

Started by scripts/vm-test.sh, which prepares the guest disk, the test disk (the packages and
the agent) and these environment variables: VM_RUN (work directory), VM_CACHE (kernel and
initrd), VM_ITBCTL (the host's itbctl: the simulators), VM_SCALE (short|full),
VM_DEB_VERSION, VM_DEB_NEXT_VERSION, VM_SEED (optional).

The guest is driven from here through three host sockets of QEMU:
  qmp.sock     QMP: hot-plug and unplug of the emulated FT232s (usb-serial on qemu-xhci), and
               system_reset for the power cuts;
  ctl.sock     a virtio-serial port to the agent in the guest (scripts/vm-agent.sh), which runs
               shell commands and returns their status and output;
  progN.sock   the host end of programmer N's usb-serial chardev. A Wire joins it to the pty of
               an `itbctl simulate` process. Bytes that the guest cannot take (the adapter is
               unplugged, the guest is rebooting) are dropped, as on a real cable.
Every wait has a deadline; a hung guest fails the run with a message. Prints "ok"/"FAIL" per
check, FIGURE lines with what was measured, and "vm-test: N passed, 0 failed" only when
everything passed.
"""
import base64
import json
import os
import random
import select
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import tty

RUN = os.environ["VM_RUN"]
CACHE = os.environ["VM_CACHE"]
ITBCTL = os.environ["VM_ITBCTL"]
FULL = os.environ.get("VM_SCALE", "short") == "full"
DEB_VERSION = os.environ["VM_DEB_VERSION"]
DEB_NEXT_VERSION = os.environ["VM_DEB_NEXT_VERSION"]
SEED = int(os.environ.get("VM_SEED") or (time.time_ns() % 1_000_000))
# VM_REPLUGS and VM_POWER_CUTS override the scale's counts (a longer or shorter run by hand).
REPLUGS = int(os.environ.get("VM_REPLUGS") or (20 if FULL else 3))
POWER_CUTS = int(os.environ.get("VM_POWER_CUTS") or (20 if FULL else 1))
# Under no other load the guest boots in 20-60 s (vm-notes.md; FIGURE vm.boot_to_agent_s); on a
# machine whose two cores are also compiling Swift it took 154 s, and its kernel reported soft
# lockups from the vCPU being starved. Ten minutes before a boot counts as hung.
BOOT_TIMEOUT = 600
SOCK = "/run/itb-bridge/api.sock"
DB = "/var/lib/itb-bridge/journal.sqlite"


class Fatal(Exception):
    """A failure after which the rest of the run cannot go on."""


passed = 0
failed = []


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def check(name, ok, detail=""):
    global passed
    if ok:
        passed += 1
        short = " ".join(str(detail).split())
        print(f"ok - {name}" + (f" ({short[:160]})" if short else ""), flush=True)
    else:
        failed.append(name)
        print(f"FAIL - {name}: {detail}", flush=True)
    return ok


def figure(name, value):
    print(f"FIGURE vm.{name} {value}", flush=True)


def wait_for(what, predicate, timeout, interval=0.1):
    """Polls predicate() until it returns a true value; Fatal after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Fatal(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def connect_unix(path, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            return s
        except OSError:
            s.close()
            if time.monotonic() > deadline:
                raise Fatal(f"cannot connect to {path}")
            time.sleep(0.1)


class LineReader(threading.Thread):
    """Reads newline-terminated lines from a socket and hands each to a callback."""

    def __init__(self, sock, on_line):
        super().__init__(daemon=True)
        self.sock, self.on_line = sock, on_line

    def run(self):
        buf = b""
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                self.on_line(line.decode(errors="replace").strip())


class QMP:
    def __init__(self, path):
        self.sock = connect_unix(path)
        self.cond = threading.Condition()
        self.replies, self.events = [], []
        self.greeted = False
        LineReader(self.sock, self._line).start()
        with self.cond:
            if not self.cond.wait_for(lambda: self.greeted, 30):
                raise Fatal("no QMP greeting")
        self.cmd("qmp_capabilities")

    def _line(self, line):
        if not line:
            return
        msg = json.loads(line)
        with self.cond:
            if "QMP" in msg:
                self.greeted = True
            elif "event" in msg:
                self.events.append((time.monotonic(), msg))
            else:
                self.replies.append(msg)
            self.cond.notify_all()

    def cmd(self, execute, timeout=30, **arguments):
        msg = {"execute": execute}
        if arguments:
            msg["arguments"] = arguments
        with self.cond:
            self.replies.clear()
            self.sock.sendall((json.dumps(msg) + "\n").encode())
            if not self.cond.wait_for(lambda: self.replies, timeout):
                raise Fatal(f"QMP {execute}: no answer in {timeout} s")
            reply = self.replies.pop(0)
        if "error" in reply:
            raise Fatal(f"QMP {execute} {arguments}: {reply['error']}")
        return reply.get("return")

    def wait_event(self, name, after, timeout, device=None):
        def found():
            for t, e in self.events:
                if t >= after and e["event"] == name and (device is None or e.get("data", {}).get("device") == device):
                    return t
            return None
        with self.cond:
            if not self.cond.wait_for(lambda: found() is not None, timeout):
                raise Fatal(f"no QMP event {name} {device or ''} within {timeout} s")
            return found()


class Agent:
    """The host end of scripts/vm-agent.sh."""

    def __init__(self, path):
        self.sock = connect_unix(path)
        self.cond = threading.Condition()
        self.hellos, self.results = [], {}
        self.next_id = 0
        LineReader(self.sock, self._line).start()

    def _line(self, line):
        parts = line.split(" ")
        with self.cond:
            if parts[0] == "HELLO" and len(parts) == 2:
                self.hellos.append((time.monotonic(), parts[1]))
            elif parts[0] == "RES" and len(parts) >= 3:
                out = base64.b64decode(parts[3]).decode(errors="replace") if len(parts) > 3 else ""
                self.results[parts[1]] = (int(parts[2]), out)
            self.cond.notify_all()

    def wait_boot(self, after, timeout=BOOT_TIMEOUT):
        """Waits for the agent's HELLO of a boot that started after `after` (monotonic)."""
        with self.cond:
            if not self.cond.wait_for(lambda: any(t >= after for t, _ in self.hellos), timeout):
                raise Fatal(f"the guest did not boot to the agent within {timeout} s (see {RUN}/console.log)")
            return [h for h in self.hellos if h[0] >= after][0]

    def run(self, script, timeout=60):
        self.next_id += 1
        cid = str(self.next_id)
        payload = base64.b64encode(script.encode()).decode()
        with self.cond:
            self.sock.sendall(f"CMD {cid} {int(timeout)} {payload}\n".encode())
            if not self.cond.wait_for(lambda: cid in self.results, timeout + 30):
                raise Fatal(f"the guest agent did not answer within {timeout + 30} s: {script[:200]}")
            return self.results.pop(cid)

    def sh(self, script, timeout=60):
        rc, out = self.run(script, timeout)
        if rc != 0:
            raise Fatal(f"guest command failed with status {rc}: {script.strip()[:300]}\n{out.strip()}")
        return out


class Wire(threading.Thread):
    """Joins a usb-serial chardev socket to a simulator's pty, dropping what cannot be delivered."""

    def __init__(self, sock_path):
        super().__init__(daemon=True)
        self.sock = connect_unix(sock_path)
        self.sock.setblocking(False)
        self.lock = threading.Lock()
        self.fd = None
        self.dropped = 0
        self.stopping = False

    def attach(self, pty_path):
        fd = os.open(pty_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(fd)  # raw, and no echo: what the guest sends must not bounce back
        with self.lock:
            old, self.fd = self.fd, fd
        if old is not None:
            os.close(old)

    def detach(self):
        with self.lock:
            old, self.fd = self.fd, None
        if old is not None:
            os.close(old)

    def run(self):
        while not self.stopping:
            with self.lock:
                fd = self.fd
            fds = [self.sock] + ([fd] if fd is not None else [])
            try:
                readable, _, _ = select.select(fds, [], [], 0.05)
            except (OSError, ValueError):
                continue
            if self.sock in readable:
                try:
                    data = self.sock.recv(65536)
                except BlockingIOError:
                    data = None
                except OSError:
                    return
                if data == b"":
                    return  # QEMU went away
                if data and fd is not None:
                    try:
                        os.write(fd, data)
                    except OSError:
                        self.dropped += len(data)
            if fd is not None and fd in readable:
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                except OSError:
                    # EIO: the simulator closed its end.
                    if self.fd == fd:
                        self.detach()
                    continue
                try:
                    sent = self.sock.send(data)
                    self.dropped += len(data) - sent
                except BlockingIOError:
                    self.dropped += len(data)
                except OSError:
                    return


class Simulator:
    """An `itbctl simulate` process, with its alarm log."""

    def __init__(self, name, serial, scenario, accel=3600):
        self.name = name
        self.log = f"{RUN}/{name}.alarms"
        self.link = f"{RUN}/{name}.pty"
        open(self.log, "w").close()
        self.stderr = open(f"{RUN}/{name}.stderr", "w")
        self.proc = subprocess.Popen(
            [ITBCTL, "simulate", "--scenario", scenario, "--accel", str(accel), "--link", self.link,
             "--programmer-serial", serial, "--alarm-log", self.log],
            stdout=subprocess.PIPE, stderr=self.stderr, start_new_session=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 15)
        if not ready:
            raise Fatal(f"itbctl simulate ({name}) printed no pty path in 15 s")
        with open(f"{RUN}/{name}.sim.pid", "w") as f:
            f.write(f"{self.proc.pid}\n")  # for vm-test.sh's clean-up, should this process die
        self.pty = self.proc.stdout.readline().decode().strip()
        if not self.pty.startswith("/dev/"):
            raise Fatal(f"itbctl simulate ({name}) printed '{self.pty}', not a pty path")

    def lines(self):
        with open(self.log) as f:
            return [l.split() for l in f if l.strip()]

    def issued(self):
        return [int(l[1]) for l in self.lines() if l[0] == "issued"]

    def stored(self):
        return {int(l[1]) for l in self.lines() if l[0] == "ack" and l[2] == "stored"}

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        try:
            os.unlink(f"{RUN}/{self.name}.sim.pid")  # its pid may be another process's now
        except FileNotFoundError:
            pass


def scenario_file(name, events, duration_days, volume=30000):
    path = f"{RUN}/{name}.json"
    with open(path, "w") as f:
        json.dump({"name": name, "description": "vm-test", "duration_days": duration_days,
                   "pump": {"volume_ul": volume}, "events": events}, f)
    return path


class VM:
    def __init__(self):
        self.qemu = None
        self.agent = self.qmp = None
        self.wires = {}
        self.sims = []
        self.plugged = set()

    def start(self):
        for s in ("qmp.sock", "ctl.sock", "prog0.sock", "prog1.sock"):
            try:
                os.unlink(f"{RUN}/{s}")
            except FileNotFoundError:
                pass
        cmd = ["nice", "-n", "5", "qemu-system-x86_64", "-machine", "q35,accel=tcg", "-m", "1024", "-smp", "1",
               "-display", "none", "-no-user-config", "-nic", "none",
               "-serial", f"file:{RUN}/console.log",
               "-kernel", f"{CACHE}/vmlinuz", "-initrd", f"{CACHE}/initrd.img",
               "-append", "root=/dev/vda rw console=ttyS0 panic=-1 loglevel=4 mitigations=off",
               "-drive", f"file={RUN}/root.qcow2,format=qcow2,if=virtio",
               "-drive", f"file={RUN}/test.img,format=raw,if=virtio,readonly=on",
               "-device", "qemu-xhci,id=xhci",
               "-chardev", f"socket,id=prog0,path={RUN}/prog0.sock,server=on,wait=off",
               "-chardev", f"socket,id=prog1,path={RUN}/prog1.sock,server=on,wait=off",
               "-device", "virtio-serial-pci",
               "-chardev", f"socket,id=ctl,path={RUN}/ctl.sock,server=on,wait=off",
               "-device", "virtserialport,chardev=ctl,name=ctl",
               "-qmp", f"unix:{RUN}/qmp.sock,server=on,wait=off",
               "-pidfile", f"{RUN}/qemu.pid"]
        self.qemu_log = open(f"{RUN}/qemu.log", "w")
        t0 = time.monotonic()
        self.qemu = subprocess.Popen(cmd, stdout=self.qemu_log, stderr=subprocess.STDOUT, start_new_session=True)
        self.qmp = QMP(f"{RUN}/qmp.sock")
        self.agent = Agent(f"{RUN}/ctl.sock")
        for n in ("prog0", "prog1"):
            self.wires[n] = Wire(f"{RUN}/{n}.sock")
            self.wires[n].start()
        self.agent.wait_boot(t0)
        return time.monotonic() - t0

    def reset(self):
        """A power cut: QMP system_reset. Returns the moment of the cut (monotonic)."""
        t = time.monotonic()
        self.qmp.cmd("system_reset")
        return t

    def plug(self, n, usb_serial):
        t = time.monotonic()
        self.qmp.cmd("device_add", driver="usb-serial", chardev=f"prog{n}", bus="xhci.0", id=f"ftdi{n}",
                     serial=usb_serial, **{"always-plugged": True})
        self.plugged.add(n)
        return t

    def unplug(self, n):
        t = time.monotonic()
        self.qmp.cmd("device_del", id=f"ftdi{n}")
        self.qmp.wait_event("DEVICE_DELETED", t, 30, device=f"ftdi{n}")
        self.plugged.discard(n)
        return t

    def simulate(self, n, name, serial, scenario, accel=3600):
        sim = Simulator(name, serial, scenario, accel)
        self.sims.append(sim)
        self.wires[f"prog{n}"].attach(sim.pty)
        return sim

    def stop(self):
        for sim in self.sims:
            try:
                sim.stop()
            except Exception:
                pass
        if self.qemu and self.qemu.poll() is None:
            try:
                self.qmp.cmd("quit", timeout=5)
                self.qemu.wait(10)
            except Exception:
                pass
            if self.qemu.poll() is None:
                os.killpg(self.qemu.pid, signal.SIGKILL)
                self.qemu.wait(10)
        try:
            os.unlink(f"{RUN}/qemu.pid")
        except FileNotFoundError:
            pass


# --- guest-side helpers ------------------------------------------------------------------------

def api(vm, path, user=None):
    """GET path on the daemon's socket in the guest, as root or as user; returns parsed JSON."""
    cmd = f"curl -sS --fail-with-body --max-time 10 --unix-socket {SOCK} http://localhost{path}"
    if user:
        cmd = f"runuser -u {user} -- {cmd}"
    return json.loads(vm.agent.sh(cmd, 30))


def guest_until(vm, condition, timeout, what):
    """Runs the shell condition in the guest every 0.1 s until it holds; Fatal after timeout."""
    rc, out = vm.agent.run(f"""
deadline=$(( $(date +%s) + {int(timeout)} ))
until {condition}; do
  [ $(date +%s) -ge $deadline ] && exit 1
  sleep 0.1
done""", timeout + 10)
    if rc != 0:
        raise Fatal(f"timed out after {timeout} s in the guest waiting for {what}\n{out.strip()}")


def guest_uptime_us(vm):
    return int(float(vm.agent.sh("cut -d' ' -f1 /proc/uptime").strip()) * 1e6)


def device_connected(vm, serial, timeout=60):
    guest_until(vm, f"curl -s --unix-socket {SOCK} http://localhost/v1/devices/{serial} 2>/dev/null "
                    f"| jq -e '.link_state == \"connected\"' >/dev/null", timeout, f"{serial} connected")


def daemon_pid(vm):
    return int(vm.agent.sh("systemctl show -p MainPID --value itb-bridged").strip())


def journal_entries(vm, args, after_us=0):
    out = vm.agent.sh(f"journalctl -b -o json --no-pager {args} | "
                      f"jq -c 'select((.__MONOTONIC_TIMESTAMP|tonumber) > {after_us})'", 60)
    return [json.loads(l) for l in out.splitlines() if l.strip()]


def alarm_rows(vm, device):
    """(device alarm id, rows in `alarm`, rows in `alarm_message`) per alarm id of one programmer."""
    out = vm.agent.sh(f"""sqlite3 -separator ' ' {DB} "
SELECT m.alarm_id, (SELECT count(*) FROM alarm a WHERE a.device = m.device AND a.source = 'pump'
                    AND (a.device_alarm_id = m.alarm_id OR a.cleared_device_alarm_id = m.alarm_id)),
       1
FROM alarm_message m WHERE m.device = '{device}' ORDER BY m.alarm_id" """, 60)
    rows = {}
    for line in out.split("\n"):
        if line.strip():
            alarm_id, in_alarm, in_msg = map(int, line.split())
            rows[alarm_id] = (in_alarm, in_msg)
    return rows


# The one permission failure the daemon meets under the shipped unit, and why it is not the
# sandbox: libdispatch (Swift's Dispatch) tries to raise a worker thread's priority (a lower nice
# value) to imitate a quality-of-service class, which the kernel refuses to any user without
# CAP_SYS_NICE (EACCES, errno 13; SystemCallFilter would answer EPERM). It changes nothing: the
# thread keeps the default priority. Every other such line fails the test.
KNOWN_HARMLESS = "Failed to set thread priority for worker thread"


def sandbox_denials(vm, since_us):
    """Kernel audit/seccomp lines, the daemon's error-or-worse entries and any line of its output
    that speaks of a refused permission, since a moment; and the count of KNOWN_HARMLESS lines."""
    kernel = journal_entries(vm, "-k", since_us)
    # What the kernel logs when it refuses: an AppArmor denial, a seccomp action that is logged
    # (audit type 1326), an LSM denial (type 1400). Not the boot's "AppArmor initialized".
    bad = [e.get("MESSAGE", "") for e in kernel
           if any(w in str(e.get("MESSAGE", "")) for w in ('apparmor="DENIED"', "type=1326", "type=1400", "avc:  denied"))]
    daemon = journal_entries(vm, "-u itb-bridged", since_us)
    harmless = 0
    for e in daemon:
        message = str(e.get("MESSAGE", ""))
        if KNOWN_HARMLESS in message and "errno=13" in message:
            harmless += 1
            continue
        lowered = message.lower()
        if int(e.get("PRIORITY", 6)) <= 3 or any(w in lowered for w in ("denied", "not permitted", "eperm", "eacces",
                                                                       "errno=", "sigsys", "seccomp")):
            bad.append(message)
    return bad, harmless


# --- the test --------------------------------------------------------------------------------

def main():
    # SIGTERM (CI's time limit, Ctrl-C's cousin) unwinds through `finally`, so QEMU and the
    # simulators are stopped; vm-test.sh also kills QEMU by its pid file if this process dies.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    random.seed(SEED)
    log(f"vm-test: scale {'full' if FULL else 'short'}, {REPLUGS} replugs, {POWER_CUTS} power cuts, seed {SEED}")
    figure("seed", SEED)
    vm = VM()
    try:
        run(vm)
    except Fatal as e:
        check("the run completed", False, str(e))
        # What the guest looks like at that moment, for the person reading CI's log.
        try:
            print("--- guest state at the failure", flush=True)
            print(vm.agent.run("systemctl status --no-pager -n 0 itb-bridged; ls -la /dev/itb /dev/ttyUSB* 2>&1;"
                               " journalctl -b --no-pager -n 60 -u itb-bridged -u systemd-udevd;"
                               f" curl -s --max-time 5 --unix-socket {SOCK} http://localhost/v1/devices", 60)[1], flush=True)
        except Exception as diag:
            print(f"(no guest state: {diag})", flush=True)
    finally:
        vm.stop()
    if failed:
        print(f"vm-test: FAILED: {passed} passed, {len(failed)} failed: {', '.join(failed)}")
        print(f"(console log: {RUN}/console.log; keep the guest disk with VM_KEEP=1)")
        return 1
    print(f"vm-test: {passed} passed, 0 failed")
    return 0


def run(vm):
    boot_s = vm.start()
    figure("boot_to_agent_s", f"{boot_s:.1f}")
    a = vm.agent
    a.sh("systemctl is-system-running --wait >/dev/null || true; systemctl is-system-running || true", 120)

    # ---- the package, installed the way an operator does ------------------------------------
    log("install the package with apt")
    t = time.monotonic()
    out = a.sh("DEBIAN_FRONTEND=noninteractive apt-get install -y /vmtest/itb-bridge.deb 2>&1", 300)
    figure("apt_install_s", f"{time.monotonic() - t:.1f}")
    status = a.sh("dpkg-query -W -f='${Status} ${Version}' itb-bridge").strip()
    check("apt install: package installed", status == f"install ok installed {DEB_VERSION}", status)
    check("apt install: no Swift runtime needed (ldd)",
          a.run("ldd /usr/bin/itb-bridged /usr/bin/itbctl | grep -Ei 'swift|foundation|dispatch|not found'")[0] == 1)
    check("apt install: service enabled and started by postinst",
          a.run("systemctl is-enabled itb-bridged && systemctl is-active itb-bridged")[0] == 0,
          a.run("systemctl status --no-pager itb-bridged")[1][-800:])
    groups = a.sh("getent passwd itb-bridge; getent group itb-bridge itb-programmer").strip()
    check("apt install: sysusers created itb-bridge and itb-programmer (member itb-bridge)",
          "itb-programmer:x:" in groups and groups.rstrip().endswith(":itb-bridge"), groups)
    check("apt install: postinst warns that the default matches any FT232R (no site ids yet)",
          "generic FTDI FT232R" in out, out[-600:])
    modes = [m.split() for m in a.sh(f"stat -c '%U %a %n' /var/lib/itb-bridge {DB} "
                                     "/var/lib/itb-bridge/itb-bridged.lock").splitlines() if m.strip()]
    check("apt install: state directory 0700, journal 0600 and the lock file, the daemon's user's",
          [m[:2] for m in modes[:2]] == [["itb-bridge", "700"], ["itb-bridge", "600"]]
          and len(modes) == 3 and modes[2][0] == "itb-bridge", "; ".join(" ".join(m) for m in modes))
    conffiles = a.sh("dpkg-query -W -f='${Conffiles}' itb-bridge").strip()
    check("apt install: /etc/itb-bridge/itb-bridged.conf is a conffile", "/etc/itb-bridge/itb-bridged.conf" in conffiles, conffiles)
    check("apt install: man pages and completions",
          a.run("test -f /usr/share/man/man8/itb-bridged.8.gz -a -f /usr/share/man/man1/itbctl.1.gz"
                " -a -f /usr/share/man/man8/itb-forward.8.gz && test -s /usr/share/bash-completion/completions/itbctl")[0] == 0)
    # itb-forward (README, "Clinic-wide view"): shipped, runs without a Swift toolchain, disabled
    # until a site configures its PostgreSQL; its config is a conffile too.
    forward = a.run("itb-forward --help >/dev/null && systemctl is-enabled itb-forward.service; systemctl is-active itb-forward.service")[1]
    check("apt install: itb-forward runs, its unit is installed disabled and inactive, its config a conffile",
          forward.split() == ["disabled", "inactive"] and "/etc/itb-bridge/itb-forward.conf" in conffiles, forward + conffiles)
    # Test users: alice may use the API, bob may not.
    a.sh("useradd -M -s /usr/sbin/nologin alice && usermod -aG itb-bridge alice && useradd -M -s /usr/sbin/nologin bob")

    # ---- plug-in starts the service, which is not enabled ----------------------------------
    log("plug-in with the service disabled and stopped")
    a.sh("systemctl disable --now itb-bridged 2>&1; ! systemctl is-active itb-bridged; ! systemctl is-enabled itb-bridged")
    check("before plug-in: itb-bridged neither enabled nor active",
          a.run("systemctl is-enabled itb-bridged; systemctl is-active itb-bridged")[1].split() == ["disabled", "inactive"])
    alarm_scn = scenario_file("alarm", [{"at_day": 0.4, "action": "alarm", "code": "motor_stall", "priority": "high",
                                         "detail": "vm-test alarm"}], duration_days=1000)
    since = guest_uptime_us(vm)
    sim0 = vm.simulate(0, "plug", "PGM-VM-0001", alarm_scn, accel=1728)   # the alarm ~20 s after start
    t_plug = vm.plug(0, "ITBVM0001")
    guest_until(vm, "systemctl is-active --quiet itb-bridged", 60, "itb-bridged started by the udev rule")
    figure("plug_to_service_active_s", f"{time.monotonic() - t_plug:.2f}")
    check("plug-in: the udev rule started itb-bridged (SYSTEMD_WANTS), still not enabled",
          a.run("systemctl is-enabled itb-bridged")[1].strip() == "disabled")
    dev = a.sh("stat -L -c '%G %a %t' /dev/itb/programmer-ITBVM0001; readlink -f /dev/itb/programmer-ITBVM0001").split()
    check("plug-in: /dev/itb/programmer-ITBVM0001 with group itb-programmer, mode 0660",
          dev[:2] == ["itb-programmer", "660"], " ".join(dev))
    props = a.sh("udevadm info -q property -n /dev/itb/programmer-ITBVM0001")
    check("plug-in: ID_MM_DEVICE_IGNORE=1", "ID_MM_DEVICE_IGNORE=1" in props.split("\n"), props)
    check("plug-in: FTDI 0403:6001 driven by ftdi_sio, ID_SERIAL_SHORT from QEMU",
          all(p in props.split("\n") for p in ("ID_VENDOR_ID=0403", "ID_MODEL_ID=6001", "ID_USB_DRIVER=ftdi_sio",
                                               "ID_SERIAL_SHORT=ITBVM0001")))
    device_connected(vm, "PGM-VM-0001")
    figure("plug_to_programmer_identified_s", f"{time.monotonic() - t_plug:.2f}")
    devices = api(vm, "/v1/devices")
    check("plug-in: the daemon identifies the programmer (/v1/devices)",
          any(d.get("id") == "PGM-VM-0001" and d.get("link_state") == "connected" for d in devices.get("devices", devices)
              if isinstance(d, dict)), json.dumps(devices)[:400])
    # The installed daemon carries its OpenAPI document (a first cut loaded it from a resource
    # bundle that only exists in the build directory, and crashed on the first query).
    document = api(vm, "/v1/openapi.json")
    check("the installed daemon serves its OpenAPI document and answers a query (?active=true)",
          str(document.get("openapi", "")).startswith("3.") and "alarms" in api(vm, "/v1/alarms?active=true"),
          str(document)[:200])
    rc, out = a.run(f"runuser -u alice -- curl -sS --unix-socket {SOCK} http://localhost/v1/devices")
    check("a user in group itb-bridge reads /v1/devices", rc == 0 and "PGM-VM-0001" in out, out[:300])
    rc, out = a.run(f"runuser -u bob -- curl -sS -v --unix-socket {SOCK} http://localhost/v1/devices 2>&1")
    check("a user outside the group gets permission denied (curl)", rc != 0 and "Permission denied" in out, out[-300:])
    rc, out = a.run("runuser -u bob -- itbctl devices 2>&1")
    check("a user outside the group gets permission denied (itbctl exit 4)", rc == 4, f"status {rc}: {out.strip()}")

    # ---- an alarm through the sandbox --------------------------------------------------------
    log("an alarm from the simulator to ACK stored, under the shipped sandbox")
    wait_for("the alarm's ACK stored", lambda: 1 in sim0.stored(), 90)
    check("alarm: the simulator got ACK stored", True)
    denials, harmless = sandbox_denials(vm, since)
    figure("libdispatch_thread_priority_eacces_lines", harmless)
    check("sandbox: no denial, seccomp or audit line, no daemon error", not denials, "; ".join(map(str, denials))[:600])
    restarts = a.sh("systemctl show -p NRestarts --value itb-bridged").strip()
    check("sandbox: the daemon did not restart", restarts == "0", restarts)
    sec = a.sh("systemd-analyze security itb-bridged --no-pager 2>&1 | tail -1")
    score = float(sec.split(":")[1].split()[0]) if "exposure level" in sec else 99
    figure("systemd_analyze_security_exposure", score)
    check("systemd-analyze security itb-bridged <= 1.5 (running unit)", score <= 1.5, sec.strip())
    entries = journal_entries(vm, "-u itb-bridged ALARM_CODE=motor_stall", since)
    ok = [e for e in entries if e.get("DEVICE") == "PGM-VM-0001" and "PRIORITY" in e and e.get("ALARM_PRIORITY") == "high"]
    check("journalctl: DEVICE=, ALARM_CODE=, ALARM_PRIORITY=, PRIORITY fields of the raised alarm", bool(ok),
          json.dumps(entries)[:500])
    if ok:
        log(f"journal entry: {ok[0].get('MESSAGE')!r} PRIORITY={ok[0].get('PRIORITY')} DEVICE={ok[0].get('DEVICE')} "
            f"ALARM_CODE={ok[0].get('ALARM_CODE')} EVENT_ID={ok[0].get('EVENT_ID')}")

    # ---- unplug and replug --------------------------------------------------------------------
    log(f"unplug, then {REPLUGS} replugs")
    lost_ms, detect_ms, reconnect_s = [], [], []
    for i in range(REPLUGS + 1):
        since = guest_uptime_us(vm)
        vm.unplug(0)
        guest_until(vm, f"curl -s --unix-socket {SOCK} 'http://localhost/v1/alarms?active=true&device=PGM-VM-0001' "
                        "| jq -e '[.alarms[] | select(.code == \"link_lost\")] | length > 0' >/dev/null",
                    30, "the link_lost alarm")
        # Both times from the guest's journal, on its monotonic clock: the kernel's "now disconnected"
        # and the daemon's entry for the stored link_lost alarm (logged once it is fsynced in the
        # journal); between them, the daemon's first entry about the link (LINK=): the detection.
        kernel = [e for e in journal_entries(vm, "-k", since) if "now disconnected from ttyUSB" in str(e.get("MESSAGE"))]
        bridge = journal_entries(vm, "-u itb-bridged ALARM_CODE=link_lost", since)
        link = [e for e in journal_entries(vm, "-u itb-bridged", since) if e.get("LINK") and e.get("LINK") != "connected"]
        if kernel and bridge:
            t_kernel = int(kernel[0]["__MONOTONIC_TIMESTAMP"])
            lost_ms.append((int(bridge[0]["__MONOTONIC_TIMESTAMP"]) - t_kernel) / 1000)
            if link:
                detect_ms.append((int(link[0]["__MONOTONIC_TIMESTAMP"]) - t_kernel) / 1000)
        else:
            check(f"unplug {i}: kernel disconnect and link_lost both in the journal", False,
                  f"kernel {len(kernel)}, link_lost {len(bridge)}")
        if i == REPLUGS:
            break
        t = vm.plug(0, "ITBVM0001")
        device_connected(vm, "PGM-VM-0001", 60)
        reconnect_s.append(time.monotonic() - t)
    if lost_ms:
        figure("unplug_to_link_lost_ms_max", f"{max(lost_ms):.0f}")
        figure("unplug_to_link_lost_ms_median", f"{sorted(lost_ms)[len(lost_ms) // 2]:.0f}")
        figure("unplug_to_link_lost_ms_all", ",".join(f"{v:.0f}" for v in lost_ms))
    if detect_ms:
        figure("unplug_to_link_state_change_ms_all", ",".join(f"{v:.0f}" for v in detect_ms))
    check(f"unplug: link_lost raised within 1 s, every time ({len(lost_ms)} unplugs)",
          len(lost_ms) == REPLUGS + 1 and max(lost_ms) <= 1000, f"ms: {lost_ms}")
    figure("replugs", len(reconnect_s))
    if reconnect_s:
        figure("replug_to_connected_s_max", f"{max(reconnect_s):.2f}")
    check(f"replug: the programmer reconnected every time ({len(reconnect_s)}/{REPLUGS})", len(reconnect_s) == REPLUGS)
    sim0.stop()

    # ---- two programmers at once ------------------------------------------------------------
    log("two programmers at once")
    quiet = scenario_file("quiet", [], duration_days=1000)
    s_a = vm.simulate(0, "two-a", "PGM-VM-000A", quiet)
    s_b = vm.simulate(1, "two-b", "PGM-VM-000B", quiet)
    vm.plug(0, "ITBVM000A")
    vm.plug(1, "ITBVM000B")
    device_connected(vm, "PGM-VM-000A")
    device_connected(vm, "PGM-VM-000B")
    links = a.sh("ls /dev/itb/").split()
    check("two programmers: both connected, both /dev/itb links",
          "programmer-ITBVM000A" in links and "programmer-ITBVM000B" in links, " ".join(links))
    vm.unplug(0)
    vm.unplug(1)
    s_a.stop()
    s_b.stop()

    # ---- the watchdog -------------------------------------------------------------------------
    log("watchdog: SIGSTOP the daemon during alarms")
    wd_scn = scenario_file("watchdog", [{"at_day": 0.1 * (k + 1), "action": "alarm", "code": str(2000 + k),
                                         "priority": "medium", "detail": f"watchdog {k}"} for k in range(20)],
                           duration_days=1000)
    a.sh("systemctl enable --now itb-bridged 2>&1")
    sim_w = vm.simulate(0, "watchdog", "PGM-VM-WDOG", wd_scn, accel=4320)  # 20 alarms, one every 2 s
    vm.plug(0, "ITBVM0001")
    device_connected(vm, "PGM-VM-WDOG")
    wait_for("a first ACK", lambda: sim_w.stored(), 60)
    pid = daemon_pid(vm)
    watchdog_s = float(a.sh("systemctl show -p WatchdogUSec --value itb-bridged").strip().rstrip("s") or 0)
    since = guest_uptime_us(vm)
    # The moment of the SIGSTOP on the guest's monotonic clock, which the journal's times use too.
    t_stop = int(float(a.sh(f"kill -STOP {pid} && cut -d' ' -f1 /proc/uptime").strip()) * 1e6)
    guest_until(vm, f"p=$(systemctl show -p MainPID --value itb-bridged); [ \"$p\" != 0 ] && [ \"$p\" != {pid} ] "
                    "&& systemctl is-active --quiet itb-bridged", 180, "systemd to restart the stopped daemon")
    manager = journal_entries(vm, "-u itb-bridged _PID=1", since)

    def first(text, after=0):
        return next((int(e["__MONOTONIC_TIMESTAMP"]) for e in manager
                     if text in str(e.get("MESSAGE")) and int(e["__MONOTONIC_TIMESTAMP"]) > after), None)
    t_timeout = first("Watchdog timeout")
    t_failed = first("Failed with result 'watchdog'")
    t_started = first("Started itb-bridged.service", t_failed or 0)
    check("watchdog: systemd's watchdog fired and the unit failed with result 'watchdog'",
          t_timeout is not None and t_failed is not None and t_started is not None,
          "; ".join(str(e.get("MESSAGE")) for e in manager)[:600])
    if t_timeout and t_failed and t_started:
        stop_to_timeout = (t_timeout - t_stop) / 1e6
        figure("watchdog_sigstop_to_timeout_s", f"{stop_to_timeout:.1f}")
        figure("watchdog_timeout_to_killed_s", f"{(t_failed - t_timeout) / 1e6:.1f}")
        figure("watchdog_killed_to_restarted_ready_s", f"{(t_started - t_failed) / 1e6:.1f}")
        # The daemon pings every WatchdogSec/2; the last ping before the SIGSTOP is at most
        # WatchdogSec/2 old, so systemd must act within WatchdogSec of the SIGSTOP. One second of
        # slack for the timer of a software-emulated guest.
        check(f"watchdog: systemd killed the stopped daemon within WatchdogSec ({watchdog_s:.0f} s)",
              stop_to_timeout <= watchdog_s + 1, f"{stop_to_timeout:.1f} s")
        # Then RestartSec=5s and a start to READY=1 (the journal opened, the socket published),
        # which takes 1-2 s on an idle guest and up to 20 s on one starved of CPU.
        check(f"watchdog: restarted and ready again within WatchdogSec ({watchdog_s:.0f} s) of the kill",
              (t_started - t_failed) / 1e6 <= watchdog_s, f"{(t_started - t_failed) / 1e6:.1f} s")
    wait_for("every watchdog-test alarm ACKed stored", lambda: len(sim_w.stored()) >= 20 and
             set(sim_w.issued()) <= sim_w.stored(), 180, interval=1)
    rows = alarm_rows(vm, "PGM-VM-WDOG")
    issued = sim_w.issued()
    check(f"watchdog: every alarm stored exactly once ({len(issued)} issued)",
          sorted(rows) == sorted(issued) and all(r == (1, 1) for r in rows.values()),
          f"issued {issued}, rows {rows}")
    vm.unplug(0)
    sim_w.stop()

    # ---- power cuts ---------------------------------------------------------------------------
    log(f"{POWER_CUTS} power cut(s) during alarm bursts (QMP system_reset), seed {SEED}")
    total_acked_before = total_after = total_stored = lost = dupes = 0
    for cut in range(1, POWER_CUTS + 1):
        serial = f"PGM-CUT-{cut:02d}"
        n_alarms = 40
        burst = scenario_file(f"cut{cut}", [{"at_day": 0.02 * (k + 1), "action": "alarm", "code": str(3000 + k),
                                             "priority": "high", "detail": f"cut {cut} alarm {k}"} for k in range(n_alarms)],
                              duration_days=1000)
        sim = vm.simulate(0, f"cut{cut}", serial, burst, accel=8640)  # one alarm every 0.2 s for 8 s
        vm.plug(0, "ITBVM0001")
        wait_for(f"cut {cut}: a first ACK", lambda: sim.stored(), 120)
        # The cut falls inside the burst: after a random number of the alarms has been issued,
        # with at least ten still to come (a random delay alone sometimes fell after the last).
        at = random.randint(min(len(sim.issued()) + 1, n_alarms - 10), n_alarms - 10)
        wait_for(f"cut {cut}: alarm {at} issued", lambda: len(sim.issued()) >= at, 120, interval=0.02)
        t_cut = vm.reset()
        time.sleep(1.0)  # ACKs that were on their way before the cut
        acked_before = sim.stored()
        issued_at_cut = len(sim.issued())
        vm.agent.wait_boot(t_cut)
        wait_for(f"cut {cut}: all {n_alarms} alarms ACKed stored after the reboot",
                 lambda: len(sim.issued()) == n_alarms and set(sim.issued()) <= sim.stored(), BOOT_TIMEOUT, interval=1)
        recovered_s = time.monotonic() - t_cut
        rows = alarm_rows(vm, serial)
        missing = [i for i in sim.issued() if i not in rows]
        double = [i for i, r in rows.items() if r != (1, 1)]
        lost += len(missing)
        dupes += len(double)
        total_acked_before += len(acked_before)
        total_after += n_alarms - len(acked_before)
        total_stored += len(rows)
        print(f"FIGURE vm.power_cut {cut}: issued_at_cut={issued_at_cut} acked_stored_before_cut={len(acked_before)} "
              f"arrived_after_reboot={n_alarms - len(acked_before)} stored_after={len(rows)} lost={len(missing)} "
              f"duplicated={len(double)} cut_to_all_acked_s={recovered_s:.1f}", flush=True)
        check(f"power cut {cut}: every ACKed alarm stored exactly once, the unacknowledged ones arrived after the reboot",
              not missing and not double and set(rows) == set(sim.issued()) and acked_before <= set(rows),
              f"missing {missing}, duplicated {double}")
        vm.unplug(0)
        sim.stop()
    figure("power_cuts", POWER_CUTS)
    figure("power_cut_alarms_acked_before_cut", total_acked_before)
    figure("power_cut_alarms_unacked_at_cut_arrived_after", total_after)
    figure("power_cut_alarms_stored", total_stored)
    figure("power_cut_alarms_lost", lost)
    figure("power_cut_alarms_duplicated", dupes)

    # ---- package life cycle -------------------------------------------------------------------
    log("package life cycle: upgrade, remove, reinstall, purge, reinstall")
    count_sql = f"sqlite3 {DB} 'SELECT count(*) FROM alarm_message'"
    before = int(a.sh(count_sql).strip())
    pid = daemon_pid(vm)
    a.sh("DEBIAN_FRONTEND=noninteractive apt-get install -y /vmtest/itb-bridge-next.deb 2>&1", 300)
    status = a.sh("dpkg-query -W -f='${Status} ${Version}' itb-bridge").strip()
    check("upgrade: new version installed", status == f"install ok installed {DEB_NEXT_VERSION}", status)
    guest_until(vm, "systemctl is-active --quiet itb-bridged", 60, "itb-bridged after the upgrade")
    check("upgrade: the daemon was restarted on the new binary", daemon_pid(vm) != pid)
    after = int(a.sh(count_sql).strip())
    check(f"upgrade: the journal kept its {before} alarm messages", after == before and before > 0, f"{before} -> {after}")
    a.sh("DEBIAN_FRONTEND=noninteractive apt-get remove -y itb-bridge 2>&1", 300)
    out = a.sh("dpkg-query -W -f='${Status}' itb-bridge; echo; test -e /usr/bin/itb-bridged && echo binary-left;"
               f" test -f {DB} && echo journal-kept; test -f /etc/itb-bridge/itb-bridged.conf && echo conf-kept;"
               " systemctl is-active itb-bridged; getent passwd itb-bridge >/dev/null && echo user-kept; true")
    check("remove: binaries gone, daemon stopped; journal, conffile and users kept",
          out.split("\n")[0].startswith("deinstall ok config-files") and "binary-left" not in out and "journal-kept" in out
          and "conf-kept" in out and "inactive" in out and "user-kept" in out, out)
    a.sh("DEBIAN_FRONTEND=noninteractive apt-get install -y /vmtest/itb-bridge.deb 2>&1", 300)
    guest_until(vm, "systemctl is-active --quiet itb-bridged", 60, "itb-bridged after reinstalling")
    again = int(a.sh(count_sql).strip())
    check(f"reinstall after remove: running, with the same journal ({again} alarm messages)", again == before, f"{before} -> {again}")
    a.sh("DEBIAN_FRONTEND=noninteractive apt-get purge -y itb-bridge 2>&1", 300)
    out = a.sh("dpkg-query -W -f='${Status}' itb-bridge 2>&1; echo; test -e /var/lib/itb-bridge && echo state-left;"
               " test -e /etc/itb-bridge && echo conf-left; systemctl is-active itb-bridged;"
               " test -e /etc/systemd/system/multi-user.target.wants/itb-bridged.service && echo enable-link-left; true")
    check("purge: journal, configuration and enablement gone", "state-left" not in out and "conf-left" not in out
          and "enable-link-left" not in out and "inactive" in out and "installed" not in out.split("\n")[0], out)
    a.sh("DEBIAN_FRONTEND=noninteractive apt-get install -y /vmtest/itb-bridge.deb 2>&1", 300)
    guest_until(vm, f"systemctl is-active --quiet itb-bridged && test -S {SOCK}", 60, "itb-bridged after reinstalling")
    fresh = int(a.sh(count_sql).strip())
    check("reinstall after purge: running with a new, empty journal", fresh == 0, str(fresh))
    # The whole run's denials, on this boot: none.
    denials, _ = sandbox_denials(vm, 0)
    check("sandbox: no denial or daemon error in this boot's journal", not denials, "; ".join(map(str, denials))[:600])
    drops = {n: w.dropped for n, w in vm.wires.items()}
    figure("wire_bytes_dropped_while_unplugged_or_rebooting", json.dumps(drops).replace(" ", ""))


if __name__ == "__main__":
    sys.exit(main())
