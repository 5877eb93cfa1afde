"""Exit codes of the `sealcam` command. Documented in docs/ref/cli.md; keep the two in step."""

from __future__ import annotations

OK = 0
#: Verification failed or problems were found (also: decrypt --force let problems through).
PROBLEMS = 1
#: Usage or configuration error: bad arguments, missing option, output exists, input of the wrong kind.
USAGE = 2
#: Key error: no matching identity, wrong passphrase, unreadable or malformed key or recipient.
KEY = 3
#: I/O error: a file cannot be read or written, a directory is missing, the disk is full.
IO = 4
#: An unexpected exception (a bug): a traceback is printed.
INTERNAL = 70
#: Interrupted (Ctrl-C).
INTERRUPTED = 130
