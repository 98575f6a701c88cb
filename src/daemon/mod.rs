//! Talking to dockerd: its API socket, its service manager and its flags.
