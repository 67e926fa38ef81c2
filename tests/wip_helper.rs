#[path = "api/helpers.rs"] mod helpers;
#[path = "api/cli.rs"] mod cli;
#[path = "api/python_client.rs"] mod python_client;
