//! KV cache (integrator)
