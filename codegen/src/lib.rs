//! kiln-codegen: backends that execute planned graphs.
