//! Event types shared by the workloads (hand-written `Event` impls, so the
//! harness does not depend on the derive macro).

use serde::{Deserialize, Serialize};

/// Declares `#[derive(Clone, Debug, Serialize, Deserialize)] struct $name { $field: u64 }`
/// with an `Event` impl named after the type.
macro_rules! events {
    ($($name:ident { $field:ident }),+ $(,)?) => {$(
        #[derive(Clone, Debug, Serialize, Deserialize)]
        pub struct $name {
            pub $field: u64,
        }

        impl stepwise::Event for $name {
            const NAME: &'static str = stringify!($name);
        }
    )+};
}

events! {
    E1 { x }, E2 { x }, E3 { x }, E4 { x }, E5 { x }, E6 { x }, E7 { x }, E8 { x }, E9 { x },
    A { x }, B { x },
    LoopEvent { n },
    WorkEvent { i },
    ResultEvent { i },
    Tick { i },
}
