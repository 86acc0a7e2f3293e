"""TF Serving's REST and gRPC protocols for the serving benchmark, in a process of their own:

    python -m bench.fake_tfserving EXPORT_BASE REST_PORT GRPC_PORT

This is our fake (tests/tfserving_fake.py: the export's signatures run with tf.saved_model.load behind
TF Serving's wire protocols), not the tensorflow_model_server binary, which cannot be installed here.
It prints `ok` once both ports listen, then reads commands from stdin, one a line, answering `ok`:
`stop` closes both ports (clients see connections refused), `start` opens them again. End of input exits.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    base, rest_port, grpc_port = argv if argv is not None else sys.argv[1:]
    from tests.tfserving_fake import FakeTFServing

    server = FakeTFServing(Path(base))
    server.rest.port, server.grpc.port = int(rest_port), int(grpc_port)
    server.start()
    print("ok", flush=True)
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "stop":
                server.stop()
            elif command == "start":
                server.start()
            else:
                print(f"unknown command {command!r}", file=sys.stderr, flush=True)
                continue
            print("ok", flush=True)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
