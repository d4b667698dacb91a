"""Read an offline W&B run file (``run-<id>.wandb``) back, for tests.

The file is W&B's transaction log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0) and then
LevelDB-log framing (32 KiB blocks; each chunk: crc32 (4 bytes), length (2), type (1): 1 full,
2 first, 3 middle, 4 last) around serialized ``wandb_internal_pb2.Record`` protobufs.
"""

from __future__ import annotations

import struct
from pathlib import Path

BLOCK = 32768
HEADER = 7


def records(path: str | Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    out, pos, parts = [], HEADER, []
    while pos + HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < HEADER:  # block trailer padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:
            continue
        parts.append(chunk)
        if kind in (1, 4):  # full, or the last piece
            rec = pb.Record()
            rec.ParseFromString(b"".join(parts))
            out.append(rec)
            parts = []
    return out


def run_log(run_dir: str | Path) -> dict:
    """What the W&B runs under ``run_dir/wandb`` logged: one dict per offline run."""
    import json

    logs = []
    for f in sorted(Path(run_dir, "wandb").glob("offline-run-*/run-*.wandb")):
        info: dict = {"history": [], "summary": {}, "config": {}, "exit_code": None}
        for r in records(f):
            kind = r.WhichOneof("record_type")
            if kind == "run":
                info.update(id=r.run.run_id, group=r.run.run_group, name=r.run.display_name)
                for u in r.run.config.update:
                    info["config"][u.key] = json.loads(u.value_json)
            elif kind == "config":
                for u in r.config.update:
                    info["config"][u.key] = json.loads(u.value_json)
            elif kind == "history":
                info["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                        for i in r.history.item})
            elif kind == "summary":
                for u in r.summary.update:
                    info["summary"][u.key or "/".join(u.nested_key)] = json.loads(u.value_json)
            elif kind == "exit":
                info["exit_code"] = r.exit.exit_code
        logs.append(info)
    return {"runs": logs}
