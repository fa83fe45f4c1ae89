//! drizzle-mio: will drive Drizzle's core machines over real TCP (mio) and real files.
//! One event loop per process feeds sockets, files and timers into a `Machine` and carries
//! out what it asks for. (Built in the next step; the simulator drives the same machines.)
