//! `report` as a user runs it: the real binary on a recorded `lab demo -o json` stream, the
//! HTML rendered by headless Chromium (Debian's `chromium`) to a PNG whose chart is checked
//! for content, in light and dark mode. Chromium missing is a failure, not a skip.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// Where Debian installs it (`scripts/setup.sh` does).
const CHROMIUM: &str = "/usr/bin/chromium";
const WINDOW: (u32, u32) = (1200, 1600);
/// Chromium gets this long to write its screenshot.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(90);

fn recorded() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../netpol-trace/tests/fixtures/report/port-typo.ndjson")
}

fn report(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_netpol-trace-under-test"))
        .arg("report")
        .args(args)
        .output()
        .expect("running netpol-trace report")
}

/// Screenshots `html` with headless Chromium; kills it (by its PID) if it hangs.
fn screenshot(html: &Path, png: &Path, dark: bool) -> Vec<u8> {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium (scripts/setup.sh does) to render the report"
    );
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(CHROMIUM);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(format!("--screenshot={}", png.display()))
    .arg(format!("--window-size={},{}", WINDOW.0, WINDOW.1));
    if dark {
        cmd.args(["--force-dark-mode", "--blink-settings=preferredColorScheme=0"]);
    }
    let mut child = cmd
        .arg(format!("file://{}", html.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting chromium");
    let deadline = Instant::now() + CHROMIUM_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {CHROMIUM_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "chromium failed: {status}\n{err}");
    std::fs::read(png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}\n{err}", png.display()))
}

/// RGB pixels of a PNG, with its width.
fn decode(png_bytes: &[u8]) -> (Vec<[u8; 3]>, u32) {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let pixels = buf[..info.buffer_size()].chunks(channels).map(|p| [p[0], p[1], p[2]]).collect();
    (pixels, info.width)
}

fn near(a: [u8; 3], b: [u8; 3], tolerance: i16) -> bool {
    a.iter().zip(b).all(|(x, y)| (i16::from(*x) - i16::from(y)).abs() <= tolerance)
}

/// The series' area: `--s0` at 28 % opacity over the page background.
fn area_colour(series: [u8; 3], background: [u8; 3]) -> [u8; 3] {
    let mix = |s: u8, b: u8| (0.28 * f64::from(s) + 0.72 * f64::from(b)).round() as u8;
    [mix(series[0], background[0]), mix(series[1], background[1]), mix(series[2], background[2])]
}

fn check_render(dark: bool) {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    let out = report(&[
        "--from-ndjson",
        recorded().to_str().unwrap(),
        "--output-file",
        html.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let png = dir.path().join("report.png");
    let (pixels, width) = decode(&screenshot(&html, &png, dark));
    assert_eq!(width, WINDOW.0);
    let (background, series) = if dark {
        ([0x0d, 0x11, 0x17], [0x58, 0xa6, 0xff])
    } else {
        ([0xff, 0xff, 0xff], [0x09, 0x69, 0xda])
    };
    assert!(near(pixels[0], background, 2), "page background {:?}", pixels[0]);
    let area = area_colour(series, background);
    let filled = pixels.iter().filter(|p| near(**p, area, 10)).count();
    let stroked = pixels.iter().filter(|p| near(**p, series, 10)).count();
    let drawn = pixels.iter().filter(|p| !near(**p, background, 8)).count();
    assert!(filled > 2_000, "the chart's area is (nearly) blank: {filled} pixels of {area:?}");
    assert!(stroked > 300, "the chart's line is missing: {stroked} pixels of {series:?}");
    assert!(drawn > 50_000, "the page is (nearly) blank: {drawn} non-background pixels");
}

#[test]
fn the_html_report_renders_with_its_chart_in_chromium() {
    check_render(false);
}

#[test]
fn the_html_report_follows_dark_mode_in_chromium() {
    check_render(true);
}

#[test]
fn markdown_goes_to_stdout_and_bad_input_exits_2_naming_file_and_line() {
    let out = report(&[
        "--from-ndjson",
        recorded().to_str().unwrap(),
        "-o",
        "markdown",
        "--output-file",
        "-",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(md.starts_with("# Incident report: app/web → db/mysql:3306/TCP"), "{md}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.ndjson");
    std::fs::write(&bad, "{\"type\":\"drop\"}\n").unwrap();
    let out = report(&["--from-ndjson", bad.to_str().unwrap(), "-o", "markdown"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}: line 1: a `drop` line", bad.display())), "{err}");
    let out = report(&[
        "--from-ndjson",
        dir.path().join("none.ndjson").to_str().unwrap(),
        "-o",
        "markdown",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = report(&["--from-ndjson", recorded().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "HTML needs --output-file");
}
