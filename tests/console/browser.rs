//! Headless Chromium over WebDriver: a chromedriver of the test's own on a
//! free loopback port, and the few things a test does with a page.

use fantoccini::elements::Element;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a page may take to show what a test waits for.
const PATIENCE: Duration = Duration::from_secs(20);

/// Where the screenshots go (and docs/console/ copies from).
pub const SCREENSHOTS: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/console-screenshots");

pub struct Browser {
    client: Client,
    driver: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn find(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find(|n| std::path::Path::new(n).exists())
        .map(|n| (*n).to_owned())
}

impl Browser {
    /// Chromium at 1280×1000, without a sandbox (CI runs as root).
    pub async fn start() -> Browser {
        let driver_bin = find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])
            .expect("chromedriver missing: apt-get install -y chromium chromium-driver (scripts/test.sh does)");
        let chromium = find(&["/usr/bin/chromium", "/usr/lib/chromium/chromium"]).expect(
            "chromium missing: apt-get install -y chromium chromium-driver (scripts/test.sh does)",
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000",
                         "--hide-scrollbars", "--lang=en-GB"],
            }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        let started = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => break client,
                Err(e) if started.elapsed() < PATIENCE => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("no WebDriver session on port {port}: {e}"),
            }
        };
        Browser { client, driver }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("page loads");
    }

    /// Waits until an element matching `css` shows `text`.
    pub async fn wait_text(&self, css: &str, text: &str) {
        let started = Instant::now();
        let mut seen = String::new();
        while started.elapsed() < PATIENCE {
            if let Ok(elements) = self.client.find_all(Locator::Css(css)).await {
                for el in elements {
                    if let Ok(t) = el.text().await {
                        if t.contains(text) {
                            return;
                        }
                        seen = t;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.screenshot("failed").await;
        let log = self.client.issue_cmd(BrowserLog).await.unwrap_or_default();
        panic!(
            "{css} never showed {text:?} (last: {seen:?}); see {SCREENSHOTS}/failed.png; \
             the browser logged {log:#}"
        );
    }

    /// The text of the element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    /// Element `css`, waited for.
    async fn element(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
    }

    pub async fn click(&self, css: &str) {
        let el = self.element(css).await;
        el.click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Replaces what input `css` holds with `value`, as typed.
    pub async fn fill(&self, css: &str, value: &str) {
        let el = self.element(css).await;
        el.clear().await.unwrap();
        if !value.is_empty() {
            el.send_keys(value).await.unwrap();
        }
    }

    pub async fn sign_in(&self, key: &str) {
        self.fill("#key", key).await;
        self.click("#sign-in").await;
    }

    pub async fn eval(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Marks the document, to tell later whether it was reloaded.
    pub async fn mark_page(&self) {
        self.eval("window.__unchanged = true; return true").await;
    }

    pub async fn same_page(&self) -> bool {
        self.eval("return window.__unchanged === true").await == json!(true)
    }

    /// Saves the window as `<name>.png`, the whole page tall.
    pub async fn screenshot(&self, name: &str) {
        let height = self
            .eval("return Math.max(document.body.scrollHeight, 700)")
            .await
            .as_u64()
            .unwrap_or(1000)
            .min(4000) as u32;
        let _ = self.client.set_window_size(1280, height + 140).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::create_dir_all(SCREENSHOTS).unwrap();
        std::fs::write(format!("{SCREENSHOTS}/{name}.png"), png).unwrap();
    }

    /// Fails on any script error, Content-Security-Policy violation or
    /// failed load the browser logged, but for the API's refusals the test
    /// provokes (the 401 and 403 of the sign-in, the 409 of an adjustment
    /// taking what is held, the 422 of a bad setting).
    pub async fn assert_clean_console(&self) {
        let logs = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("browser log");
        let logs = logs.as_array().expect("the browser log is a list");
        let bad: Vec<&Value> = logs
            .iter()
            .filter(|entry| {
                let message = entry["message"].as_str().unwrap_or_default();
                let provoked = entry["source"] == "network"
                    && message.contains("/v1/")
                    && ["401", "403", "409", "422"]
                        .iter()
                        .any(|s| message.contains(&format!("with a status of {s} ")));
                entry["level"] == "SEVERE" && !provoked
            })
            .collect();
        assert!(bad.is_empty(), "the browser logged errors: {bad:#?}");
    }

    pub async fn stop(mut self) {
        let client = self.client.clone();
        let _ = client.close().await;
        let _ = self.driver.kill();
    }
}

/// chromedriver's `POST /session/{id}/se/log` for the browser's console.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _url: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({ "type": "browser" }).to_string()),
        )
    }
}
