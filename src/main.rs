#[tokio::main]
async fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = keyport::cli::parse_or_exit();
    std::process::exit(keyport::cli::run(cli).await);
}
