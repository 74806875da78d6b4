//! Bad configurations: exact position, key path and message of each problem.
