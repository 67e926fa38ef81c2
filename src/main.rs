#[tokio::main]
async fn main() {
    keyport::telemetry::init_logging();
    let cli = keyport::cli::parse_or_exit();
    std::process::exit(keyport::cli::run(cli).await);
}
