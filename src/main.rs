// mimalloc rather than glibc's malloc: the per-request buffers are small and
// short-lived, and on the token endpoint glibc spent about 5% of the CPU on
// them (benches/profile.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    keyport::telemetry::init_logging();
    let cli = keyport::cli::parse_or_exit();
    std::process::exit(keyport::cli::run(cli).await);
}
