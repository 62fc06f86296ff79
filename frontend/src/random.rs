//! The global random generator behind `rand`/`randn` (PyTorch's default generator).

use rand::rngs::StdRng;
use rand::SeedableRng;
use std::sync::Mutex;

/// PyTorch's default seed, so that an unseeded program is reproducible too.
const DEFAULT_SEED: u64 = 67280421310721;

static RNG: Mutex<Option<StdRng>> = Mutex::new(None);

/// Seeds the generator: the same seed gives the same `rand`/`randn` sequence.
///
/// ```
/// kiln_frontend::manual_seed(7);
/// let a = kiln_frontend::Tensor::rand(&[3]).to_vec_f64().unwrap();
/// kiln_frontend::manual_seed(7);
/// assert_eq!(a, kiln_frontend::Tensor::rand(&[3]).to_vec_f64().unwrap());
/// ```
pub fn manual_seed(seed: u64) {
    *RNG.lock().unwrap_or_else(|p| p.into_inner()) = Some(StdRng::seed_from_u64(seed));
}

pub(crate) fn with_rng<T>(f: impl FnOnce(&mut StdRng) -> T) -> T {
    let mut g = RNG.lock().unwrap_or_else(|p| p.into_inner());
    f(g.get_or_insert_with(|| StdRng::seed_from_u64(DEFAULT_SEED)))
}
