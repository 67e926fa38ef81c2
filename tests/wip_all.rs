#[path = "api/helpers.rs"] mod helpers;
#[path = "api/migrations.rs"] mod migrations;
#[path = "api/resources.rs"] mod resources;
#[path = "api/token.rs"] mod token;
#[path = "api/tokens.rs"] mod tokens;
#[path = "api/webhooks.rs"] mod webhooks;
#[path = "api/cli.rs"] mod cli;
#[path = "api/python_client.rs"] mod python_client;
