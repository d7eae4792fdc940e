"""Build the example contracts: AssemblyScript sources with the pinned `asc` of
node_modules (package-lock.json), WAT sources with wasmtime's wat2wasm (no toolchain).

Called by `make contracts` (examples/contracts/contracts.mk), which installs the npm tree
first, and by tests/unit/contracts/test_build.py, which rebuilds into a temporary directory
and checks the bytes equal the committed wasm/*.wasm. The output is reproducible: the same
sources and pinned compiler give the same bytes (no paths, names or timestamps embedded).

    python examples/contracts/build.py [--out DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import wasmtime

HERE = Path(__file__).resolve().parent
ASC = HERE / "node_modules" / ".bin" / "asc"

# name -> source, relative to HERE. Each builds into <out>/<name>.wasm.
ASSEMBLYSCRIPT = {"token": "token/token.ts", "escrow": "escrow/escrow.ts"}
WAT = {"counter": "counter/counter.wat"}

# stub runtime: an instance lives for one call, so it never needs to free; AssemblyScript's
# own aborts go through the ABI's abort (its default would import env.abort, refused at deploy)
ASC_FLAGS = [
    "--runtime", "stub", "-O3", "--noColors",
    "--use", "abort=sdk/assemblyscript/consortium/onAbort",
]  # fmt: skip
WAT_SDK = HERE / "sdk" / "wat" / "consortium.wat"
SDK_MARKER = ";;@sdk"


def build_assemblyscript(source: str, out: Path) -> None:
    if not ASC.exists():
        sys.exit(f"error: {ASC} missing: run 'make contracts' (it runs npm ci first)")
    # asc resolves the --use path and the source relative to its working directory
    subprocess.run([str(ASC), source, "-o", str(out), *ASC_FLAGS], cwd=HERE, check=True)


def wat_with_sdk(text: str) -> str:
    """The contract text with the SDK spliced in at its `;;@sdk` line."""
    lines = text.splitlines(keepends=True)
    marked = [i for i, line in enumerate(lines) if line.strip() == SDK_MARKER]
    if len(marked) != 1:
        raise ValueError(f"expected exactly one {SDK_MARKER} line, found {len(marked)}")
    sdk = WAT_SDK.read_text(encoding="utf-8")
    return "".join([*lines[: marked[0]], sdk, *lines[marked[0] + 1 :]])


def build_wat(source: str, out: Path) -> None:
    text = wat_with_sdk((HERE / source).read_text(encoding="utf-8"))
    out.write_bytes(wasmtime.wat2wasm(text))


def build_all(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    built = []
    for name, source in ASSEMBLYSCRIPT.items():
        path = out_dir / f"{name}.wasm"
        build_assemblyscript(source, path)
        built.append(path)
    for name, source in WAT.items():
        path = out_dir / f"{name}.wasm"
        build_wat(source, path)
        built.append(path)
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "wasm", help="output directory")
    args = parser.parse_args()
    for path in build_all(args.out.resolve()):
        print(f"built {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
