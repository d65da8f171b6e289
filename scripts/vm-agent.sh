#!/bin/bash
# The guest's end of scripts/vm-test.py: runs the commands the host sends on the virtio-serial
# port /dev/virtio-ports/ctl and answers with their exit status and output.
#
#   host -> guest:  CMD <id> <timeout-seconds> <base64 of a bash script>
#   guest -> host:  HELLO <boot id>                 (once per boot, when the agent starts)
#                   RES <id> <exit status> <base64 of its stdout and stderr>
# Commands get no standard input and not the port (fd 3 is closed for them), and their output
# goes to a file: a process they leave running cannot hold up the answer.
set -u
port=/dev/virtio-ports/ctl
for _ in $(seq 300); do [ -e "$port" ] && break; sleep 0.1; done
exec 3<>"$port"
echo "HELLO $(cat /proc/sys/kernel/random/boot_id)" >&3
while true; do
    # EOF while the host end is not connected: wait and read again.
    if ! IFS=' ' read -r kind id limit script <&3; then sleep 0.2; continue; fi
    [ "$kind" = CMD ] || continue
    printf '%s' "$script" | base64 -d > /run/vmtest-cmd.sh
    timeout -k 5 "$limit" bash /run/vmtest-cmd.sh > /run/vmtest-out 2>&1 < /dev/null 3>&-
    rc=$?
    echo "RES $id $rc $(base64 -w0 < /run/vmtest-out)" >&3
done
