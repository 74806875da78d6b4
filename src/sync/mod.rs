//! Full sync: the pieces that turn a plan into a guarded run. For now only the
//! pure safety limits; the job, scheduler and report are wired by the lead.

pub mod safety;
