//! The `docker-userns` binary; everything it does lives in the library.

fn main() -> std::process::ExitCode {
    docker_userns::app::main()
}
