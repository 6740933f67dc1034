//! Model architectures (integrator)
