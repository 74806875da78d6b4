//! A real `redis-server` child process on a free loopback port, for tests of the
//! Redis-backed stores and of several replicas (unit and integration tests share it).
//! Starts and stops the process only; never installs anything (tests/peers/install.sh
//! does) and never listens beyond 127.0.0.1.

use std::time::Duration;

/// A running redis-server, killed when dropped.
pub struct RedisServer {
    /// `redis://127.0.0.1:PORT/`.
    pub url: String,
    /// The port it listens on.
    pub port: u16,
    child: tokio::process::Child,
}

impl std::fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl RedisServer {
    /// Starts `redis-server` without persistence on a free port and waits (up to
    /// 10 s) until it accepts connections. `Err(NotFound)` when it is not installed.
    pub async fn start() -> std::io::Result<RedisServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        Self::start_on(port).await
    }

    /// Starts it on this port (a restart after [`RedisServer::kill`]).
    pub async fn start_on(port: u16) -> std::io::Result<RedisServer> {
        let child = tokio::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            if std::time::Instant::now() >= deadline {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("redis-server did not listen on 127.0.0.1:{port} within 10 s"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(RedisServer {
            url: format!("redis://127.0.0.1:{port}/"),
            port,
            child,
        })
    }

    /// Kills the server (Redis "down") and waits for it to exit.
    pub async fn kill(&mut self) -> std::io::Result<()> {
        self.child.kill().await
    }
}
