#!/usr/bin/env python
"""Generate the shipped LiteRT model, cunet/pretrained/default.tflite, from cunet/pretrained/default.keras.

    python scripts/make_tflite.py            # (re)write it; run it again whenever default.keras changes
    python scripts/make_tflite.py --check    # exit 1 if it is missing or differs from what would be written

This script is the one source of the shipped `.tflite`: float32 weights (quantized variants lose
accuracy, see README "Engines and formats"), the `encode`/`decode` signatures (ENCODE_ONCE), the
default chunking (10 s chunks, 1 s overlap, as `separate`), the `.keras` file's provenance record
with an export section (its weights' SHA-256 included). The output is deterministic: the same
`.keras` file and TensorFlow version give the same bytes, so `--check` can compare them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "cunet" / "pretrained" / "default.keras"
TARGET = SOURCE.with_suffix(".tflite")
QUANTIZE = "none"
# With the encode/decode signatures: the encoder runs once per chunk for all four stems (a tenth faster,
# more for a model with TDF layers in the encoder); their buffers are not shared, which the default 10 s
# chunk pays for (docs/engines.md).
ENCODE_ONCE = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--check", action="store_true", help="compare with the shipped file instead of writing it"
    )
    args = parser.parse_args(argv)
    import cunet.export.savedmodel  # noqa: F401  (TensorFlow; loaded here so the timing below is the conversion's)
    from cunet.export.formats import export_model_file

    if args.check:
        with tempfile.TemporaryDirectory(prefix="cunet-tflite-") as tmp:
            fresh = export_model_file(
                SOURCE,
                Path(tmp) / TARGET.name,
                fmt="tflite",
                quantize=QUANTIZE,
                source=str(SOURCE.relative_to(ROOT)),
                encode_once=ENCODE_ONCE,
            ).read_bytes()
        same = TARGET.is_file() and TARGET.read_bytes() == fresh
        print(
            f"{TARGET.relative_to(ROOT)}: {'up to date' if same else 'OUT OF DATE (run scripts/make_tflite.py)'}"
        )
        return 0 if same else 1
    out = export_model_file(
        SOURCE,
        TARGET,
        fmt="tflite",
        quantize=QUANTIZE,
        overwrite=True,
        source=str(SOURCE.relative_to(ROOT)),
        encode_once=ENCODE_ONCE,
    )
    print(
        f"wrote {out.relative_to(ROOT)} ({out.stat().st_size / 1e6:.1f} MB) from {SOURCE.relative_to(ROOT)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
