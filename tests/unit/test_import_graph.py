"""The project's own modules import one another without cycles, and each top-level part imports only
what it may (checked on the import graph, not on what happens to be loaded)."""

from __future__ import annotations

import grimp
import networkx as nx
import pytest

PACKAGES = ("api", "worker", "common", "pretrained")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES)


def _digraph(graph: grimp.ImportGraph) -> nx.DiGraph:
    edges = nx.DiGraph()
    for module in graph.modules:
        edges.add_node(module)
        for imported in graph.find_modules_directly_imported_by(module):
            edges.add_edge(module, imported)
    return edges


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    cycles = list(nx.simple_cycles(_digraph(graph)))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join([*cycle, cycle[0]]) for cycle in cycles)


@pytest.mark.parametrize(
    ("importer", "forbidden"),
    [("common", "api"), ("common", "worker"), ("worker", "api"), ("api", "worker"), ("pretrained", "worker")],
)
def test_layers(graph: grimp.ImportGraph, importer: str, forbidden: str) -> None:
    chains = graph.find_shortest_chains(importer=importer, imported=forbidden)
    assert not chains, f"{importer} imports {forbidden}: {sorted(chains)}"
