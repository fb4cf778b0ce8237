"""The worker of the test-only "expr" callback language: a callback is one
Python expression over `node`, `metadata`, `stage` and `task_id`.

It speaks the sandbox's worker protocol (sandbox/languages/base.py) with its
answers on stdout, shared with whatever the expression prints, like deno.
Standard library only: it runs as `python -I -S expr_worker.py`.
"""

import json
import sys
from typing import Any

MARK = "\x1e"


def main() -> None:
    config = json.loads(sys.stdin.readline())
    token, max_chars = config["token"], int(config["max_chars"])

    def send(nonce: str, message: dict[str, Any]) -> None:
        sys.stdout.write(f"{MARK}{token} {nonce} {json.dumps(message, default=repr)}\n")
        sys.stdout.flush()

    send("ready", {"ok": True, "layers": {}})
    load = json.loads(sys.stdin.readline())
    source = load["source"].strip()
    if len(source) > max_chars:
        send("load", {"ok": False, "kind": "exception", "error": f"longer than {max_chars}"})
        return
    try:
        code = compile(source, load["filename"], "eval")
    except SyntaxError as exc:
        send("load", {"ok": False, "kind": "syntax", "error": str(exc)})
        return
    send("load", {"ok": True})
    for line in sys.stdin:
        message = json.loads(line)
        request = message["request"]
        node = request["node"]
        metadata = dict(node["metadata"]) if node is not None else {}
        names = {
            "node": node,
            "metadata": metadata,
            "stage": request["stage"],
            "task_id": request["id"],
        }
        try:
            value = eval(code, names)
        except Exception as exc:
            send(message["nonce"], {"ok": False, "kind": "exception", "error": repr(exc)})
            continue
        answer = {
            "ok": True,
            "result": value,
            "truthy": bool(value),
            "metadata": metadata if node is not None else None,
        }
        send(message["nonce"], answer)


if __name__ == "__main__":
    main()
