//! The `rocketstore` command-line inspector (being written).
fn main() {
    eprintln!("rocketstore: no subcommands yet");
    std::process::exit(2);
}
