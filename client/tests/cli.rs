//! `stockhold-cc` driven end to end: the built binary against a running
//! stockhold, as a call-centre agent would use it.

mod common;

use common::{spawn_app, TestApp, CALLCENTRE};
use stockhold_client::{Line, ReservationStatus};

/// What one run of the CLI did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `stockhold-cc args…` against `app` with the call-centre key, and
/// echoes the session so a failing test shows it.
async fn cc(app: &TestApp, args: &[&str]) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_stockhold-cc"))
        .args(args)
        .env("STOCKHOLD_URL", &app.address)
        .env("STOCKHOLD_KEY", CALLCENTRE)
        .output()
        .await
        .expect("stockhold-cc runs");
    let run = Run {
        code: output.status.code().expect("exited"),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    };
    println!(
        "$ stockhold-cc {}\n{}{}[exit {}]\n",
        args.join(" "),
        run.stdout,
        run.stderr,
        run.code
    );
    run
}

/// The value of a `Label  value` line of the output.
fn field<'a>(stdout: &'a str, label: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(label).filter(|rest| rest.starts_with("  ")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label} line in:\n{stdout}"))
}

/// The cells of the table row that starts with `first`.
fn row<'a>(stdout: &'a str, first: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&first))
        .unwrap_or_else(|| panic!("no {first} row in:\n{stdout}"))
}

#[tokio::test]
async fn an_agent_checks_holds_changes_and_commits_a_basket() {
    let app = spawn_app().await;
    app.create_sku("MUG-LOGO", 10).await;
    app.create_sku("TSHIRT-RED-M", 3).await;

    let availability = cc(&app, &["availability", "MUG-LOGO", "TSHIRT-RED-M", "GHOST"]).await;
    assert_eq!(availability.code, 0, "{}", availability.stderr);
    assert_eq!(
        row(&availability.stdout, "MUG-LOGO"),
        ["MUG-LOGO", "10", "yes", "-"]
    );
    assert_eq!(
        row(&availability.stdout, "TSHIRT-RED-M"),
        ["TSHIRT-RED-M", "3", "yes", "-"]
    );
    assert_eq!(
        row(&availability.stdout, "GHOST"),
        ["GHOST", "0", "no", "-"]
    );

    let reserve = cc(
        &app,
        &[
            "reserve",
            "--customer",
            "c-123",
            "--ttl",
            "2h",
            "MUG-LOGO=2",
            "TSHIRT-RED-M=1",
        ],
    )
    .await;
    assert_eq!(reserve.code, 0, "{}", reserve.stderr);
    let id = field(&reserve.stdout, "Reservation").to_owned();
    assert!(id.starts_with("res_"), "{id}");
    assert_eq!(field(&reserve.stdout, "Status"), "held");
    assert_eq!(field(&reserve.stdout, "Customer"), "c-123");
    assert_eq!(field(&reserve.stdout, "Channel"), "callcentre");
    let expires = field(&reserve.stdout, "Expires");
    assert!(
        expires.ends_with("(in 2h)") || expires.ends_with("(in 1h 59m)"),
        "{expires}"
    );
    assert_eq!(row(&reserve.stdout, "MUG-LOGO"), ["MUG-LOGO", "2"]);
    assert_eq!(row(&reserve.stdout, "total"), ["total", "3"]);
    let held = app.admin.reservation(&id).await.unwrap();
    assert_eq!((held.expires_at - held.created_at).num_seconds(), 7_200);

    let show = cc(&app, &["show", &id]).await;
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert_eq!(field(&show.stdout, "Reservation"), id);
    assert_eq!(row(&show.stdout, "TSHIRT-RED-M"), ["TSHIRT-RED-M", "1"]);

    let set = cc(&app, &["set", &id, "MUG-LOGO=3", "TSHIRT-RED-M=0"]).await;
    assert_eq!(set.code, 0, "{}", set.stderr);
    assert_eq!(row(&set.stdout, "MUG-LOGO"), ["MUG-LOGO", "3"]);
    assert!(!set.stdout.contains("TSHIRT-RED-M"), "{}", set.stdout);
    let changed = app.admin.reservation(&id).await.unwrap();
    assert_eq!(changed.lines, [Line::new("MUG-LOGO", 3)]);

    let commit = cc(
        &app,
        &[
            "commit",
            &id,
            "--order-id",
            "ord-cc-1",
            "--payment-ref",
            "psp-77",
        ],
    )
    .await;
    assert_eq!(commit.code, 0, "{}", commit.stderr);
    assert!(
        commit.stdout.starts_with("Committed.\n"),
        "{}",
        commit.stdout
    );
    assert_eq!(field(&commit.stdout, "Order"), "ord-cc-1");
    assert_eq!(field(&commit.stdout, "Payment"), "psp-77");
    assert_eq!(row(&commit.stdout, "MUG-LOGO"), ["MUG-LOGO", "3", "0"]);

    let after = cc(&app, &["show", &id]).await;
    assert_eq!(after.code, 0, "{}", after.stderr);
    assert_eq!(field(&after.stdout, "Status"), "committed");
    assert_eq!(field(&after.stdout, "Order"), "ord-cc-1");

    let again = cc(&app, &["commit", &id]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.starts_with("Already committed earlier"));

    let stock = cc(&app, &["availability", "MUG-LOGO", "TSHIRT-RED-M"]).await;
    assert_eq!(
        row(&stock.stdout, "MUG-LOGO"),
        ["MUG-LOGO", "7", "yes", "-"]
    );
    assert_eq!(
        row(&stock.stdout, "TSHIRT-RED-M"),
        ["TSHIRT-RED-M", "3", "yes", "-"]
    );
}

#[tokio::test]
async fn an_agent_sees_and_holds_the_call_centres_allocation_first() {
    // Arrange: 10 units, 4 of them set aside for the call centre.
    let app = spawn_app().await;
    let put = stockhold_client::PutSku::create(10).allocation("callcentre", 4);
    app.admin.put_sku("VASE", &put).await.unwrap();

    // Act + Assert: the agent may hold all 10, 4 of them its own.
    let stock = cc(&app, &["availability", "VASE"]).await;
    assert_eq!(stock.code, 0, "{}", stock.stderr);
    assert!(stock.stdout.contains("ALLOCATION LEFT"), "{}", stock.stdout);
    assert_eq!(
        row(&stock.stdout, "VASE"),
        ["VASE", "10", "yes", "4", "of", "4"]
    );
    let web = cc(&app, &["--channel", "web", "availability", "VASE"]).await;
    assert_eq!(row(&web.stdout, "VASE"), ["VASE", "6", "yes", "-"]);

    let reserve = cc(&app, &["reserve", "--customer", "c-9", "VASE=5"]).await;
    assert_eq!(reserve.code, 0, "{}", reserve.stderr);
    assert_eq!(field(&reserve.stdout, "Channel"), "callcentre");
    let stock = cc(&app, &["availability", "VASE"]).await;
    assert_eq!(
        row(&stock.stdout, "VASE"),
        ["VASE", "5", "yes", "0", "of", "4"]
    );
    let view = app.admin.sku("VASE").await.unwrap();
    assert_eq!(view.pool("callcentre").map(|p| p.held), Some(4));
    assert_eq!(view.pool("shared").map(|p| p.held), Some(1));
}

#[tokio::test]
async fn an_agent_releases_a_hold_and_cannot_commit_it_after() {
    let app = spawn_app().await;
    app.create_sku("LAMP", 2).await;
    let reserve = cc(&app, &["reserve", "--customer", "c-9", "LAMP=2"]).await;
    let id = field(&reserve.stdout, "Reservation").to_owned();

    let release = cc(&app, &["release", &id]).await;
    let commit = cc(&app, &["commit", &id]).await;

    assert_eq!(release.code, 0, "{}", release.stderr);
    assert_eq!(field(&release.stdout, "Status"), "released");
    assert_eq!(
        app.admin.reservation(&id).await.unwrap().status,
        ReservationStatus::Released
    );
    assert_eq!(commit.code, 1);
    assert_eq!(
        commit.stderr.trim(),
        format!("error: reservation {id} was released; make a new one")
    );
}

#[tokio::test]
async fn refusals_are_worded_for_the_agent_and_exit_1() {
    let app = spawn_app().await;
    app.create_sku("LAMP", 1).await;
    app.create_sku("DESK", 0).await;

    let short = cc(&app, &["reserve", "--customer", "c-9", "LAMP=3"]).await;
    assert_eq!(short.code, 1);
    assert_eq!(
        short.stderr.trim(),
        "error: insufficient stock: SKU LAMP wants 3, 1 available"
    );
    assert!(short.stdout.is_empty());

    let both_short = cc(&app, &["reserve", "--customer", "c-9", "LAMP=3", "DESK=1"]).await;
    assert_eq!(both_short.code, 1);
    assert_eq!(
        both_short.stderr.trim(),
        "error: insufficient stock\n  SKU LAMP wants 3, 1 available\n  SKU DESK wants 1, 0 available"
    );

    let missing = cc(&app, &["show", "res_nope"]).await;
    assert_eq!(missing.code, 1);
    assert_eq!(
        missing.stderr.trim(),
        "error: reservation res_nope not found"
    );

    let unknown = cc(&app, &["reserve", "--customer", "c-9", "GHOST=1"]).await;
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("unknown SKU") && unknown.stderr.contains("GHOST"),
        "{}",
        unknown.stderr
    );

    // The call-centre ceiling is a day; every problem is listed, by argument.
    let invalid = cc(
        &app,
        &["reserve", "--customer", "c-9", "--ttl", "2d", "LAMP=1"],
    )
    .await;
    assert_eq!(invalid.code, 1);
    assert!(
        invalid
            .stderr
            .starts_with("error: the request was refused: --ttl: "),
        "{}",
        invalid.stderr
    );
    let long_customer = "c".repeat(200);
    let two_problems = cc(
        &app,
        &[
            "reserve",
            "--customer",
            &long_customer,
            "--ttl",
            "2d",
            "LAMP=1",
        ],
    )
    .await;
    assert_eq!(two_problems.code, 1);
    let lines: Vec<&str> = two_problems.stderr.lines().collect();
    assert_eq!(lines[0], "error: the request was refused", "{lines:?}");
    assert!(lines[1].starts_with("  --ttl: "), "{lines:?}");
    assert!(lines[2].starts_with("  --customer: "), "{lines:?}");

    let wrong_key = cc(&app, &["--key", "nope", "availability", "LAMP"]).await;
    assert_eq!(wrong_key.code, 1);
    assert!(wrong_key.stderr.contains("API key was refused"));
}

#[tokio::test]
async fn bad_command_lines_exit_2_and_say_what_is_wrong() {
    let app = spawn_app().await;

    let cases: &[(&[&str], &str)] = &[
        (
            &["reserve", "--customer", "c", "MUG-LOGO"],
            "expected SKU=QTY, e.g. MUG-LOGO=2, not \"MUG-LOGO\"",
        ),
        (
            &["reserve", "--customer", "c", "MUG-LOGO=two"],
            "the quantity in \"MUG-LOGO=two\" is not a whole number",
        ),
        (
            &["reserve", "--customer", "c", "MUG-LOGO=0"],
            "must be at least 1",
        ),
        (
            &["reserve", "--customer", "c", "MUG LOGO=1"],
            "a SKU is made of A-Z a-z 0-9 . _ : -",
        ),
        (
            &["reserve", "--customer", "c", "--ttl", "2 hours", "A=1"],
            "use e.g. 90s, 15m, 2h, 1d or seconds",
        ),
        (&["reserve", "A=1"], "--customer"),
        (
            &["set", "res_x", "A=-1"],
            "must be 0 (remove the line) or more",
        ),
        (&["set", "res_x"], "<SKU=QTY>"),
        (&["availability"], "<SKU>"),
        (&["--url", "localhost:8080", "show", "res_x"], "http://"),
    ];
    for (args, expected) in cases {
        let run = cc(&app, args).await;
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(expected),
            "{args:?}: {expected:?} not in {}",
            run.stderr
        );
    }
}

#[tokio::test]
async fn an_unreachable_service_exits_3() {
    let app = spawn_app().await;

    let run = cc(&app, &["--url", "http://127.0.0.1:9", "availability", "A"]).await;

    assert_eq!(run.code, 3);
    assert!(
        run.stderr
            .starts_with("error: cannot reach stockhold at http://127.0.0.1:9: "),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn json_output_is_the_services_answer() {
    let app = spawn_app().await;
    app.create_sku("LAMP", 4).await;

    let run = cc(&app, &["--json", "reserve", "--customer", "c-1", "LAMP=2"]).await;

    assert_eq!(run.code, 0, "{}", run.stderr);
    let held: stockhold_client::Reservation = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(held.lines, [Line::new("LAMP", 2)]);
    assert_eq!(held.channel.as_deref(), Some("callcentre"));
}
