//! kiln-passes: graph-to-graph passes over `kiln_ir::Graph`.
