//! The one integration test binary (one link step on 2 cores). Each module is
//! one area; `harness` starts usher exactly as `usher serve` does.

mod harness;
mod proxy;
mod upstream;
