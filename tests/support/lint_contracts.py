"""An import-linter contract type that import-linter lacks: an **allowlist**.

`make lint` runs `lint-imports` with this module registered in pyproject.toml
(`[tool.importlinter] contract_types = ["allowlist: tests.support.lint_contracts.AllowlistContract"]`).

    type = "allowlist"
    source_modules = ["consortium_node.ledger", ...]    # packages: every module below them
    allowed_modules = ["consortium_node.ledger", "dataclasses", ...]
    allowed_imports = ["consortium_node.ledger.certs -> cryptography"]   # optional: one
                                     # importer may use one more module, no other may

Kept when every import *made by* a source module names an allowed module or a module below
one. External and standard-library modules appear in the graph by their top-level name
(`include_external_packages = true`), so `collections.abc` is allowed by `collections`.
Indirect imports need no separate rule: when the allowed internal modules are themselves
sources (the pure core allows only itself), every module reachable from a source is checked
by the same list. A forbidden-list contract cannot say this — a new `import subprocess`
passes every list that forgot to name it."""

from __future__ import annotations

from typing import Any

import grimp
from importlinter import Contract, ContractCheck, fields, output


def _covered(name: str, prefixes: set[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


class AllowlistContract(Contract):
    type_name = "allowlist"

    source_modules = fields.ListField(subfield=fields.StringField())
    allowed_modules = fields.ListField(subfield=fields.StringField())
    allowed_imports = fields.ListField(subfield=fields.StringField(), required=False)

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        # populated by Contract from the options; the class attributes are the field specs
        source_names: list[str] = self.source_modules  # type: ignore[assignment]
        allowed_names: list[str] = self.allowed_modules  # type: ignore[assignment]
        sources: set[str] = set()
        for src in source_names:
            if src not in graph.modules:
                raise ValueError(f"allowlist contract {self.name!r}: no module {src} in the graph")
            sources |= {src} | graph.find_descendants(src)
        allowed = set(allowed_names)
        pairs: list[str] = self.allowed_imports or []  # type: ignore[assignment]
        exceptions = {tuple(x.strip() for x in pair.split("->")) for pair in pairs}
        violations: list[dict[str, Any]] = []
        for importer in sorted(sources):
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                if _covered(imported, allowed) or (importer, imported) in exceptions:
                    continue
                details = graph.get_import_details(importer=importer, imported=imported)
                lines = sorted({d["line_number"] for d in details}) or [0]
                violations.append({"importer": importer, "imported": imported, "lines": lines})
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for v in check.metadata["violations"]:
            where = ", ".join(f"l.{n}" for n in v["lines"])
            output.print_error(
                f"{v['importer']} imports {v['imported']} ({where}), which is not on the allowlist",
                bold=False,
            )
            output.new_line()
