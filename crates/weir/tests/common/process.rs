//! The real `weir` binary as a child process.

use super::*;

/// The real `weir` binary running as a child process, with port-0 listeners
/// whose bound addresses are read back from its JSON logs.
pub struct WeirProcess {
    pub child: std::process::Child,
    pub proxy: SocketAddr,
    pub control: SocketAddr,
    /// The Admin API's address, when it announced one while starting.
    pub admin: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
    pub config_path: std::path::PathBuf,
    logs: std::sync::mpsc::Receiver<serde_json::Value>,
}

impl WeirProcess {
    /// Writes `yaml` to a temp file and runs `weir run -c` on it. The YAML
    /// must use port 0 for the listener and control API.
    pub fn start(yaml: &str) -> WeirProcess {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("weir.yaml");
        std::fs::write(&config_path, yaml).unwrap();
        let mut proc_ = WeirProcess::spawn(dir, config_path);
        proc_.wait_listening();
        proc_
    }

    /// Waits (up to 20 s) for a log line matching `pred` and returns it.
    pub fn wait_log(&mut self, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.logs.recv_timeout(left) {
                Ok(v) if pred(&v) => return v,
                Ok(_) => continue,
                Err(e) => panic!("expected log line not seen: {e}"),
            }
        }
    }

    pub fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit (up to 30 s) and returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(std::time::Instant::now() < deadline, "weir did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for WeirProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl WeirProcess {
    /// Runs `weir run -c config_path` (a file the caller prepared, e.g. in
    /// `dir`) without waiting for anything: `proxy` and `control` stay
    /// `0.0.0.0:0` until [`wait_listening`](Self::wait_listening).
    pub fn spawn(dir: tempfile::TempDir, config_path: std::path::PathBuf) -> WeirProcess {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["--log-format", "json", "--log-level", "info", "run", "-c"])
            .arg(&config_path)
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn weir");
        let stderr = child.stderr.take().unwrap();
        let (tx, logs) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        WeirProcess {
            child,
            proxy: "0.0.0.0:0".parse().unwrap(),
            control: "0.0.0.0:0".parse().unwrap(),
            admin: None,
            dir,
            config_path,
            logs,
        }
    }

    /// Reads the bound proxy and control addresses from the log lines that
    /// announce them (both come early, in either order), and the Admin
    /// API's (announced before the proxy's) when it runs.
    pub fn wait_listening(&mut self) {
        let mut proxy = None;
        let mut control = None;
        while proxy.is_none() || control.is_none() {
            let v = self.wait_log(|v| {
                v["message"] == "proxy listening"
                    || v["message"] == "control API listening"
                    || v["message"] == "admin API listening"
            });
            let addr: SocketAddr = v["address"].as_str().unwrap().parse().unwrap();
            if v["message"] == "proxy listening" {
                proxy = Some(addr);
            } else if v["message"] == "admin API listening" {
                self.admin = Some(addr);
            } else {
                control = Some(addr);
            }
        }
        self.proxy = proxy.unwrap();
        self.control = control.unwrap();
    }
}
