//! Golden CLI tests (trycmd): help, errors and output shapes, with no relay.
//! Regenerate expected output with `TRYCMD=overwrite cargo test -p troth-cli --test cli`.

#[test]
fn cli_tests() {
    trycmd::TestCases::new()
        .env("NO_COLOR", "1")
        .env("TROTH_HOME", "no-such-troth-home")
        .env("TROTH_PASSPHRASE", "unused passphrase for golden tests")
        .case("tests/cmd/*.toml");
}
