// itbctl: client and engineering tool. Subcommands arrive with the engineering-tools issue.
import ITBProtocol

print("itbctl: no subcommands yet (protocol library only).")
