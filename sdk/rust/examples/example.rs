//! A small program using the SDK, for the tests (test/sdk/rust.test.ts) and as an example:
//!   example request '{"credential":"k","url":"https://api.example.com/v1/models",...}'
//!   example status
//!   example gateway CREDENTIAL
//! The server and token come from TRUST_PROTOCOL_SERVER and TRUST_PROTOCOL_TOKEN. On a refusal it
//! prints `error STATUS CODE: MESSAGE` and exits 1.

use std::io::{Read, Write};
use trust_protocol::{Client, Error, Options, Template};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        println!("error {} {}: {}", e.status, e.code, e.message);
        std::process::exit(1);
    }
}

fn run(args: &[String]) -> Result<(), Error> {
    let tp = Client::new(Options::default())?;
    match (args.first().map(String::as_str), args.get(1)) {
        (Some("request"), Some(text)) => {
            let mut res = tp.request(&Template::parse(text)?)?;
            let mut out = std::io::stdout();
            print!("status {}\n", res.status);
            let mut buf = [0u8; 8192];
            loop {
                let n = match res.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        return Err(Error::from_io(&e).cloned().unwrap_or_else(|| io_error(&e)))
                    }
                };
                if n == 0 {
                    return Ok(());
                }
                // Flushed at once: the tests check that events arrive as the upstream sends them.
                let _ = out.write_all(&buf[..n]).and_then(|_| out.flush());
            }
        }
        (Some("status"), None) => {
            let h = tp.status()?;
            println!(
                "status {} version {} expires {}",
                h.status, h.version, h.expires_at
            );
            Ok(())
        }
        (Some("gateway"), Some(credential)) => {
            println!("{}", tp.gateway_url(credential)?);
            Ok(())
        }
        _ => Err(Error {
            status: 0,
            code: "usage".to_string(),
            kind: "usage".to_string(),
            message: "usage: example request TEMPLATE | status | gateway CREDENTIAL".to_string(),
            hint: None,
            retry_after: None,
        }),
    }
}

fn io_error(e: &std::io::Error) -> Error {
    Error {
        status: 0,
        code: "io".to_string(),
        kind: "upstream".to_string(),
        message: e.to_string(),
        hint: None,
        retry_after: None,
    }
}
