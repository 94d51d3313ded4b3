//! `stockhold-cc`: the call-centre command line. An agent on the phone checks
//! stock, holds it for the caller, changes the hold while they talk, and
//! commits or releases it, reading plain tables and plain-worded errors.

#![forbid(unsafe_code)]

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use std::process::ExitCode;
use stockhold_client::{
    codes, AvailabilityItem, Client, CommitOutcome, CommitRequest, Error, Line, Order,
    PatchReservation, Pool, Reservation, ReservationStatus, ReserveRequest,
};

const EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  the service refused the request (the message says why; nothing was changed)
  2  the command line is wrong
  3  the service could not be reached, is unavailable, or answered strangely";

/// Check, hold, change, commit and release stock for a caller.
#[derive(Debug, Parser)]
#[command(name = "stockhold-cc", version, after_help = EXIT_CODES)]
struct Cli {
    /// Where stockhold runs.
    #[arg(
        long,
        global = true,
        env = "STOCKHOLD_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// The API key to send (a callcentre key allows holds of up to a day).
    #[arg(
        long,
        global = true,
        env = "STOCKHOLD_KEY",
        default_value = "dev-callcentre-key",
        hide_env_values = true,
        hide_default_value = true
    )]
    key: String,
    /// Sent as Idempotency-Key with reserve, set, commit and release, so that
    /// running the same command again (after a timeout, say) does it once.
    #[arg(long, global = true, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// The sales channel: holds are made on it (drawing on its allocation
    /// of a SKU first) and availability is what it may hold.
    #[arg(
        long,
        global = true,
        env = "STOCKHOLD_CHANNEL",
        default_value = "callcentre"
    )]
    channel: String,
    /// Print the service's answer as JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// How many units of each SKU the channel can hold now, and what is
    /// left of its allocation.
    Availability {
        /// SKUs to look up.
        #[arg(required = true, value_name = "SKU", value_parser = parse_sku)]
        skus: Vec<String>,
    },
    /// Hold stock for a caller: every line or nothing.
    Reserve(ReserveArgs),
    /// Show a reservation.
    Show {
        /// The reservation id (res_…).
        #[arg(value_name = "RES")]
        id: String,
    },
    /// Change a reservation: set quantities (0 removes a line) and/or restart its TTL.
    Set {
        /// The reservation id (res_…).
        #[arg(value_name = "RES")]
        id: String,
        /// Restart the hold's time from now: 90s, 15m, 2h, 1d or seconds.
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<u64>,
        /// New quantities; SKUs not named keep theirs.
        #[arg(value_name = "SKU=QTY", value_parser = parse_set_line, required_unless_present = "ttl")]
        lines: Vec<Line>,
    },
    /// Sell what a reservation holds.
    Commit {
        /// The reservation id (res_…).
        #[arg(value_name = "RES")]
        id: String,
        /// The order id to use (one is made up if absent).
        #[arg(long, value_name = "X")]
        order_id: Option<String>,
        /// The payment reference.
        #[arg(long, value_name = "Y")]
        payment_ref: Option<String>,
    },
    /// Give a reservation's units back at once.
    Release {
        /// The reservation id (res_…).
        #[arg(value_name = "RES")]
        id: String,
    },
}

#[derive(Debug, Args)]
struct ReserveArgs {
    /// The caller's customer id.
    #[arg(long, value_name = "C")]
    customer: String,
    /// How long to hold: 90s, 15m, 2h, 1d or seconds [default: the service's, 15m].
    #[arg(long, value_parser = parse_ttl)]
    ttl: Option<u64>,
    /// Hold what is there of short lines instead of refusing.
    #[arg(long)]
    allow_partial: bool,
    /// What to hold.
    #[arg(required = true, value_name = "SKU=QTY", value_parser = parse_hold_line)]
    lines: Vec<Line>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let client = match Client::new(&cli.url, cli.key.as_str()) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let client = match &cli.idempotency_key {
        Some(key) => client.with_idempotency_key(key.as_str()),
        None => client,
    };
    match run(&cli, &client).await {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", explain(&e, &cli));
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Runs the command; the text to print.
async fn run(cli: &Cli, client: &Client) -> Result<String, Error> {
    Ok(match &cli.command {
        Command::Availability { skus } => {
            let availability = client.availability_on(skus, Some(&cli.channel)).await?;
            if cli.json {
                return Ok(json(&availability));
            }
            // The channel's allocation of each SKU that exists.
            let mut allocations = Vec::with_capacity(skus.len());
            for item in &availability.items {
                allocations.push(match client.sku(&item.sku).await {
                    Ok(view) => view.pool(&cli.channel).cloned(),
                    Err(Error::Problem { code, .. }) if code == codes::NOT_FOUND => None,
                    Err(e) => return Err(e),
                });
            }
            availability_table(&availability.items, &allocations)
        }
        Command::Reserve(args) => {
            let mut request = ReserveRequest::new(args.lines.clone())
                .customer(args.customer.as_str())
                .channel(cli.channel.as_str());
            request.ttl_seconds = args.ttl;
            request.allow_partial = args.allow_partial;
            let held = client.reserve(&request).await?;
            match cli.json {
                true => json(&held),
                false => format!("Held.\n\n{}", reservation_text(&held)),
            }
        }
        Command::Show { id } => {
            let reservation = client.reservation(id).await?;
            match cli.json {
                true => json(&reservation),
                false => reservation_text(&reservation),
            }
        }
        Command::Set { id, ttl, lines } => {
            let change = PatchReservation {
                lines: lines.clone(),
                ttl_seconds: *ttl,
            };
            let changed = client.patch_reservation(id, &change).await?;
            match cli.json {
                true => json(&changed),
                false => format!("Changed.\n\n{}", reservation_text(&changed)),
            }
        }
        Command::Commit {
            id,
            order_id,
            payment_ref,
        } => {
            let request = CommitRequest {
                order_id: order_id.clone(),
                payment_ref: payment_ref.clone(),
            };
            let outcome = client.commit(id, &request).await?;
            match cli.json {
                true => json(outcome.order()),
                false => commit_text(&outcome),
            }
        }
        Command::Release { id } => {
            let released = client.release(id).await?;
            let headline = match released.status {
                ReservationStatus::Expired => {
                    "It had already expired; its units were back on sale."
                }
                _ => "Released; its units are back on sale.",
            };
            match cli.json {
                true => json(&released),
                false => format!("{headline}\n\n{}", reservation_text(&released)),
            }
        }
    })
}

// ---------------------------------------------------------------- arguments

/// Whether `sku` is 1–64 characters of `A-Z a-z 0-9 . _ : -`, as API.md says.
fn parse_sku(sku: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
    if sku.is_empty() {
        Err("the SKU is empty".into())
    } else if sku.chars().count() > 64 {
        Err(format!("SKU \"{sku}\" is longer than 64 characters"))
    } else if let Some(bad) = sku.chars().find(|c| !allowed(*c)) {
        Err(format!(
            "SKU \"{sku}\" has {bad:?}; a SKU is made of A-Z a-z 0-9 . _ : -"
        ))
    } else {
        Ok(sku.to_owned())
    }
}

/// `SKU=QTY` with QTY at least `min`.
fn parse_line(arg: &str, min: i64) -> Result<Line, String> {
    let Some((sku, qty)) = arg.split_once('=') else {
        return Err(format!("expected SKU=QTY, e.g. MUG-LOGO=2, not \"{arg}\""));
    };
    let sku = parse_sku(sku.trim()).map_err(|m| format!("{m} (in \"{arg}\")"))?;
    let qty: i64 = qty
        .trim()
        .parse()
        .map_err(|_| format!("the quantity in \"{arg}\" is not a whole number"))?;
    if qty < min {
        return Err(match min {
            1 => format!(
                "the quantity in \"{arg}\" must be at least 1 (to drop a line later: set RES {sku}=0)"
            ),
            _ => format!("the quantity in \"{arg}\" must be 0 (remove the line) or more"),
        });
    }
    if qty > 1_000_000 {
        return Err(format!(
            "the quantity in \"{arg}\" is over the limit of 1000000"
        ));
    }
    Ok(Line::new(sku, qty))
}

/// A line to hold: `SKU=QTY`, QTY ≥ 1.
fn parse_hold_line(arg: &str) -> Result<Line, String> {
    parse_line(arg, 1)
}

/// A line to set: `SKU=QTY`, QTY ≥ 0 (0 removes it).
fn parse_set_line(arg: &str) -> Result<Line, String> {
    parse_line(arg, 0)
}

/// A TTL in seconds from `90s`, `15m`, `2h`, `1d`, `1h30m` or plain seconds.
fn parse_ttl(arg: &str) -> Result<u64, String> {
    let bad = || format!("\"{arg}\" is not a duration; use e.g. 90s, 15m, 2h, 1d or seconds");
    let text = arg.trim();
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return positive(seconds, arg);
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    positive(total, arg)
}

fn positive(seconds: u64, arg: &str) -> Result<u64, String> {
    match seconds {
        0 => Err(format!("the TTL \"{arg}\" must be longer than 0")),
        s => Ok(s),
    }
}

// ---------------------------------------------------------------- output

/// A table with a header, a rule under it, and columns padded to fit;
/// numeric columns are aligned right.
struct Table {
    header: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(columns: &[(&'static str, bool)]) -> Self {
        Table {
            header: columns.iter().map(|(h, _)| *h).collect(),
            right: columns.iter().map(|(_, r)| *r).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let width = |i: usize| {
            self.rows
                .iter()
                .map(|r| r[i].chars().count())
                .chain([self.header[i].chars().count()])
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..self.header.len()).map(width).collect();
        let line = |cells: Vec<String>| {
            let padded: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| match self.right[i] {
                    true => format!("{c:>w$}", w = widths[i]),
                    false => format!("{c:<w$}", w = widths[i]),
                })
                .collect();
            format!("{}\n", padded.join("  ").trim_end())
        };
        let mut out = line(self.header.iter().map(|h| h.to_string()).collect());
        out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect()));
        for row in &self.rows {
            out.push_str(&line(row.clone()));
        }
        out
    }
}

/// Label/value lines with the values aligned.
fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}

fn json<T: serde::Serialize>(value: &T) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("response types serialize");
    text.push('\n');
    text
}

fn availability_table(items: &[AvailabilityItem], allocations: &[Option<Pool>]) -> String {
    let mut table = Table::new(&[
        ("SKU", false),
        ("AVAILABLE", true),
        ("IN STOCK", false),
        ("ALLOCATION LEFT", true),
    ]);
    for (item, allocation) in items.iter().zip(allocations) {
        let in_stock = if item.in_stock { "yes" } else { "no" };
        let allocation = match allocation {
            Some(p) => format!("{} of {}", p.available, p.on_hand),
            None => "-".into(),
        };
        table.row(vec![
            item.sku.clone(),
            item.available.to_string(),
            in_stock.into(),
            allocation,
        ]);
    }
    table.render()
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `1h 59m`, `45s`, `2d 3h`: the two largest units.
fn span(seconds: i64) -> String {
    let units = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let mut left = seconds.max(0);
    let mut parts = Vec::new();
    for (size, name) in units {
        if left >= size || (parts.is_empty() && size == 1) {
            parts.push(format!("{}{name}", left / size));
            left %= size;
        }
        if parts.len() == 2 {
            break;
        }
    }
    parts.join(" ")
}

fn reservation_text(r: &Reservation) -> String {
    let mut expires = time(r.expires_at);
    if r.status == ReservationStatus::Held {
        // To the nearest second, so a fresh 2 h hold reads "in 2h".
        let left = ((r.expires_at - Utc::now()).num_milliseconds() + 500).div_euclid(1000);
        expires.push_str(&match left {
            l if l > 0 => format!("  (in {})", span(l)),
            l => format!("  (due {} ago)", span(-l)),
        });
    }
    let mut pairs = vec![
        ("Reservation", r.id.clone()),
        ("Status", r.status.to_string()),
        (
            "Customer",
            r.customer_id.clone().unwrap_or_else(|| "-".into()),
        ),
        ("Channel", r.channel.clone().unwrap_or_else(|| "-".into())),
        ("Created", time(r.created_at)),
    ];
    match r.status {
        ReservationStatus::Held | ReservationStatus::Expired => pairs.push(("Expires", expires)),
        _ => {}
    }
    if let Some(order) = &r.order_id {
        pairs.push(("Order", order.clone()));
    }
    let mut out = fields(&pairs);
    out.push('\n');
    if r.lines.is_empty() {
        out.push_str("No lines.\n");
    } else {
        let mut table = Table::new(&[("SKU", false), ("QTY", true)]);
        for line in &r.lines {
            table.row(vec![line.sku.clone(), line.qty.to_string()]);
        }
        let total: i64 = r.lines.iter().map(|l| l.qty).sum();
        table.row(vec!["total".into(), total.to_string()]);
        out.push_str(&table.render());
    }
    if !r.shortages.is_empty() {
        out.push_str("\nHeld less than asked:\n");
        let mut table = Table::new(&[("SKU", false), ("ASKED", true), ("HELD", true)]);
        for s in &r.shortages {
            table.row(vec![
                s.sku.clone(),
                s.requested.to_string(),
                s.available.to_string(),
            ]);
        }
        out.push_str(&table.render());
    }
    out
}

fn commit_text(outcome: &CommitOutcome) -> String {
    let order = outcome.order();
    let headline = match outcome {
        CommitOutcome::Persisted(_) => "Committed.".to_owned(),
        CommitOutcome::Pending(_) => "Committed. The order database is unreachable just now: \
             the sale is made and will be written there as soon as it is back."
            .to_owned(),
        CommitOutcome::AlreadyCommitted(_) => {
            "Already committed earlier; this is that order.".to_owned()
        }
    };
    format!("{headline}\n\n{}", order_text(order))
}

fn order_text(o: &Order) -> String {
    let mut pairs = vec![
        ("Order", o.order_id.clone()),
        ("Reservation", o.reservation_id.clone()),
        (
            "Customer",
            o.customer_id.clone().unwrap_or_else(|| "-".into()),
        ),
        ("Channel", o.channel.clone().unwrap_or_else(|| "-".into())),
    ];
    if let Some(payment) = &o.payment_ref {
        pairs.push(("Payment", payment.clone()));
    }
    pairs.push(("Committed", time(o.committed_at)));
    if !o.is_persisted() {
        pairs.push(("Persisted", "not yet".into()));
    }
    let mut table = Table::new(&[("SKU", false), ("QTY", true), ("RETURNED", true)]);
    for line in &o.lines {
        table.row(vec![
            line.sku.clone(),
            line.qty.to_string(),
            line.returned_qty.to_string(),
        ]);
    }
    format!("{}\n{}", fields(&pairs), table.render())
}

// ---------------------------------------------------------------- errors

/// 1: refused; 3: unreachable, unavailable or strange.
fn exit_code(e: &Error) -> u8 {
    match e {
        Error::Problem { status, .. } if *status < 500 => 1,
        Error::InvalidUrl { .. } => 2,
        _ => 3,
    }
}

/// What went wrong, in words an agent can act on.
fn explain(e: &Error, cli: &Cli) -> String {
    let reservation = match &cli.command {
        Command::Show { id }
        | Command::Set { id, .. }
        | Command::Commit { id, .. }
        | Command::Release { id } => Some(id.as_str()),
        _ => None,
    };
    let Error::Problem {
        status,
        code,
        title,
        detail,
        ..
    } = e
    else {
        return match e {
            Error::Transport(t) if t.is_timeout() => {
                format!("stockhold at {} did not answer in time", cli.url)
            }
            Error::Transport(t) => {
                format!("cannot reach stockhold at {}: {}", cli.url, cause(t))
            }
            other => other.to_string(),
        };
    };
    let list = |items: Vec<String>| -> String {
        match items.len() {
            1 => format!(": {}", items[0]),
            _ => items.iter().map(|i| format!("\n  {i}")).collect(),
        }
    };
    match code.as_str() {
        codes::INSUFFICIENT_STOCK => {
            let shortages = e
                .shortages()
                .iter()
                .map(|s| {
                    format!(
                        "SKU {} wants {}, {} available",
                        s.sku, s.requested, s.available
                    )
                })
                .collect();
            format!("insufficient stock{}", list(shortages))
        }
        codes::VALIDATION_FAILED => {
            let problems = e
                .field_errors()
                .iter()
                .map(|f| format!("{}: {}", field_label(&f.field, cli), f.message))
                .collect();
            format!("the request was refused{}", list(problems))
        }
        codes::UNKNOWN_SKU => format!(
            "unknown SKU (never set up, check the spelling): {}",
            e.unknown_skus().join(", ")
        ),
        codes::PER_CUSTOMER_LIMIT_EXCEEDED => {
            let limits = e
                .limits()
                .iter()
                .map(|l| {
                    format!(
                        "SKU {} allows {} per customer; they have {} already and want {}",
                        l.sku, l.limit, l.already, l.requested
                    )
                })
                .collect();
            format!("over the per-customer limit{}", list(limits))
        }
        codes::SALE_NOT_STARTED => {
            let skus = e
                .sale_not_started()
                .iter()
                .map(|s| format!("SKU {} goes on sale at {}", s.sku, time(s.starts_at)))
                .collect();
            format!("not on sale yet{}", list(skus))
        }
        codes::NOT_FOUND => match reservation {
            Some(id) => format!("reservation {id} not found"),
            None => format!("not found: {detail}"),
        },
        codes::RESERVATION_EXPIRED => format!(
            "reservation {} has expired and its units went back on sale; make a new one",
            reservation.unwrap_or("")
        ),
        codes::RESERVATION_RELEASED => format!(
            "reservation {} was released; make a new one",
            reservation.unwrap_or("")
        ),
        codes::RESERVATION_COMMITTED => format!(
            "reservation {} is already committed; it can no longer be changed or released",
            reservation.unwrap_or("")
        ),
        codes::UNAUTHORIZED => {
            "the API key was refused; pass a valid one with --key or STOCKHOLD_KEY".into()
        }
        codes::FORBIDDEN => format!("this API key may not do that: {detail}"),
        codes::UNAVAILABLE => {
            format!("stockhold is unavailable, nothing was changed; try again shortly ({detail})")
        }
        _ => format!("{title} ({status} {code}): {detail}"),
    }
}

/// A reqwest error's innermost cause: "Connection refused (os error 111)".
fn cause(e: &dyn std::error::Error) -> String {
    let mut last = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

/// `lines[1].qty` → `"B=0" (lines[1].qty)`, naming the argument the agent typed.
fn field_label(field: &str, cli: &Cli) -> String {
    let lines: &[Line] = match &cli.command {
        Command::Reserve(args) => &args.lines,
        Command::Set { lines, .. } => lines,
        _ => &[],
    };
    let index = field
        .strip_prefix("lines[")
        .and_then(|rest| rest.split(']').next())
        .and_then(|i| i.parse::<usize>().ok());
    match index.and_then(|i| lines.get(i)) {
        Some(line) => format!("{}={} ({field})", line.sku, line.qty),
        None => option_of(field).unwrap_or(field).to_owned(),
    }
}

/// The option that fills a request member, if one does.
fn option_of(field: &str) -> Option<&'static str> {
    Some(match field {
        "ttl_seconds" => "--ttl",
        "customer_id" => "--customer",
        "channel" => "--channel",
        "order_id" => "--order-id",
        "payment_ref" => "--payment-ref",
        "Idempotency-Key" => "--idempotency-key",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_and_bad_ones_say_why() {
        assert_eq!(parse_hold_line("MUG-LOGO=2"), Ok(Line::new("MUG-LOGO", 2)));
        assert_eq!(parse_set_line("A:1.b_c=0"), Ok(Line::new("A:1.b_c", 0)));
        let cases = [
            ("MUG-LOGO", "expected SKU=QTY"),
            ("=2", "the SKU is empty"),
            ("A B=2", "has ' '"),
            ("A=two", "not a whole number"),
            ("A=", "not a whole number"),
            ("A=0", "at least 1"),
            ("A=-1", "at least 1"),
            ("A=1000001", "over the limit"),
        ];
        for (arg, expected) in cases {
            let message = parse_hold_line(arg).unwrap_err();
            assert!(message.contains(expected), "{arg}: {message}");
        }
        assert!(parse_set_line("A=-1")
            .unwrap_err()
            .contains("0 (remove the line)"));
        assert!(parse_sku(&"x".repeat(65)).is_err());
    }

    #[test]
    fn ttls_take_units_or_plain_seconds() {
        for (arg, seconds) in [
            ("90s", 90),
            ("15m", 900),
            ("2h", 7_200),
            ("1d", 86_400),
            ("1h30m", 5_400),
            ("3600", 3_600),
        ] {
            assert_eq!(parse_ttl(arg), Ok(seconds), "{arg}");
        }
        for bad in ["", "2x", "h", "1.5h", "-5", "0", "0m", "5m3"] {
            assert!(parse_ttl(bad).is_err(), "{bad} was taken");
        }
    }

    #[test]
    fn tables_align_and_right_justify_numbers() {
        let mut table = Table::new(&[("SKU", false), ("QTY", true)]);
        table.row(vec!["MUG-LOGO".into(), "2".into()]);
        table.row(vec!["A".into(), "120".into()]);
        assert_eq!(
            table.render(),
            "SKU       QTY\n--------  ---\nMUG-LOGO    2\nA         120\n"
        );
    }

    #[test]
    fn spans_show_the_two_largest_units() {
        assert_eq!(span(0), "0s");
        assert_eq!(span(45), "45s");
        assert_eq!(span(7_199), "1h 59m");
        assert_eq!(span(90_000), "1d 1h");
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
