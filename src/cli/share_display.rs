//! Handing new shares to their custodians: on the terminal one custodian at a time, or as one
//! file per custodian.
//!
//! **Terminal** (the default; stdin and stdout must be a terminal): for each share the screen is
//! cleared, the custodian is called, the share is shown in numbered groups of four, the custodian
//! may type it back to check their copy (input hidden; a mistake is named by group), and the
//! screen and its scrollback are cleared before the next custodian comes. **Files**
//! (`--share-dir DIR`): `DIR` is created 0700 if needed, and each share goes to its own file,
//! created 0600 and never over an existing one, with a comment header saying what it is.

use std::fs;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use super::CliError;
use crate::keystore::NewShareSet;
use crate::secret::SecretString;
use crate::shares::text;

/// Where new shares go.
#[derive(Clone, Debug)]
pub enum Delivery {
    /// Shown on the terminal, one custodian at a time.
    Terminal,
    /// One file per share in this directory.
    Dir(PathBuf),
}

impl Delivery {
    /// From `--share-dir`; checks a terminal is there when there is none.
    pub fn choose(share_dir: Option<&Path>) -> Result<Delivery, CliError> {
        match share_dir {
            Some(dir) => Ok(Delivery::Dir(dir.to_owned())),
            None if std::io::stdout().is_terminal() && std::io::stdin().is_terminal() => {
                Ok(Delivery::Terminal)
            }
            None => Err(CliError::usage(
                "no terminal to show the shares on, one custodian at a time: give --share-dir DIR to write one file per custodian",
            )),
        }
    }

    /// How the ceremony log names it.
    pub fn describe(&self) -> String {
        match self {
            Delivery::Terminal => "on the terminal, one custodian at a time".into(),
            Delivery::Dir(dir) => format!("as one file per custodian in {}", dir.display()),
        }
    }

    /// Checks, before anything is created, that the files can be written.
    pub fn prepare(&self, store_tag: &str) -> Result<(), CliError> {
        let Delivery::Dir(dir) = self else {
            return Ok(());
        };
        if dir.exists() && !dir.is_dir() {
            return Err(CliError::usage(format!(
                "--share-dir {}: not a directory",
                dir.display()
            )));
        }
        if let Ok(entries) = fs::read_dir(dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(&format!("custos-share-{store_tag}-")) {
                    return Err(CliError::usage(format!(
                        "--share-dir {} already holds shares of this store ({name}): move them away first",
                        dir.display()
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The file name of share `index` of `count`.
pub fn file_name(store_tag: &str, set: &str, index: usize, count: usize) -> String {
    format!("custos-share-{store_tag}-{set}-{index}-of-{count}.txt")
}

/// Hands out the shares of `set` for `store_dir`; returns the files written (none on a terminal).
pub fn deliver(
    set: &NewShareSet,
    delivery: &Delivery,
    store_dir: &Path,
) -> Result<Vec<PathBuf>, CliError> {
    match delivery {
        Delivery::Terminal => {
            show_on_terminal(set)?;
            Ok(Vec::new())
        }
        Delivery::Dir(dir) => write_files(set, dir, store_dir),
    }
}

fn header(set: &NewShareSet, index: usize) -> Vec<String> {
    let info = set.info();
    vec![
        format!(
            "Custos key share {index} of {} — any {} of the {} shares unseal key store {}…",
            info.count,
            info.threshold,
            info.count,
            hex::encode(&info.store_id[..4])
        ),
        format!(
            "share set {}, created {}",
            hex::encode(info.set_id),
            crate::policy::eval::format_time(crate::ceremony::now())
        ),
        "Keep it secret and offline. Give it only at an unseal ceremony.".into(),
    ]
}

fn write_files(set: &NewShareSet, dir: &Path, store_dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    let io = |path: &Path, e: std::io::Error| {
        CliError::operational(format!("cannot write {}: {e}", path.display()))
    };
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| io(dir, e))?;
    let info = set.info();
    let tag = hex::encode(&info.store_id[..4]);
    let set_id = hex::encode(info.set_id);
    let mut written = Vec::new();
    for (n, share) in set.texts().iter().enumerate() {
        let index = n + 1;
        let path = dir.join(file_name(&tag, &set_id, index, set.texts().len()));
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let result = options.open(&path).and_then(|mut f| {
            let mut text = String::new();
            for line in header(set, index) {
                text.push_str(&format!("# {line}\n"));
            }
            text.push_str(&format!(
                "# Check it alone at any time: custos shares check --store {} --share-file {}\n",
                store_dir.display(),
                path.display()
            ));
            f.write_all(text.as_bytes())?;
            f.write_all(share.expose_secret().as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()
        });
        if let Err(e) = result {
            for p in &written {
                let _ = fs::remove_file(p);
            }
            return Err(io(&path, e));
        }
        written.push(path);
    }
    Ok(written)
}

/// Erases the screen and its scrollback.
fn clear(out: &mut impl Write) -> std::io::Result<()> {
    write!(out, "\x1b[2J\x1b[3J\x1b[H")?;
    out.flush()
}

/// Prints `prompt` and waits for Enter on stdin.
pub fn wait_enter(prompt: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout();
    write!(out, "{prompt}")
        .and_then(|_| out.flush())
        .map_err(CliError::operational)?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(CliError::operational)?;
    Ok(())
}

fn show_on_terminal(set: &NewShareSet) -> Result<(), CliError> {
    let count = set.texts().len();
    let mut out = std::io::stdout();
    let fail = |e: std::io::Error| CliError::operational(format!("terminal: {e}"));
    for (n, share) in set.texts().iter().enumerate() {
        let index = n + 1;
        clear(&mut out).map_err(fail)?;
        writeln!(
            out,
            "Share {index} of {count}: for custodian {index} only. Everyone else: look away.\n"
        )
        .map_err(fail)?;
        wait_enter(&format!(
            "Custodian {index}, press Enter when you alone can see the screen. "
        ))?;
        clear(&mut out).map_err(fail)?;
        let mut screen = String::new();
        for line in header(set, index) {
            screen.push_str(&format!("{line}\n"));
        }
        screen.push('\n');
        let groups = text::groups(share);
        for (row, chunk) in groups.chunks(6).enumerate() {
            let cells: Vec<String> = chunk
                .iter()
                .enumerate()
                .map(|(i, g)| format!("{:>2}. {}", row * 6 + i + 1, g.as_str()))
                .collect();
            screen.push_str(&format!("  {}\n", cells.join("   ")));
        }
        screen.push_str(&format!("\n  as one line: {}\n\n", share.expose_secret()));
        out.write_all(screen.as_bytes()).map_err(fail)?;
        drop(zeroize::Zeroizing::new(screen));
        check_copy(share, index)?;
        clear(&mut out).map_err(fail)?;
    }
    writeln!(out, "All {count} shares handed out; the screen is cleared.").map_err(fail)?;
    Ok(())
}

/// Lets the custodian type their copy back (hidden) until it matches, or skip with Enter.
fn check_copy(share: &SecretString, index: usize) -> Result<(), CliError> {
    let want = text::parse(share).map_err(CliError::operational)?;
    loop {
        let typed = rpassword::prompt_password(format!(
            "Custodian {index}: write the share down, then type it back to check your copy (hidden; Enter alone skips): "
        ))
        .map_err(CliError::operational)?;
        let typed = SecretString::new(typed);
        if typed.expose_secret().trim().is_empty() {
            return Ok(());
        }
        match text::parse(&typed) {
            Ok(got)
                if got.share.index() == want.share.index()
                    && got.set_id == want.set_id
                    && crate::secret::constant_time_eq(
                        got.share.value_bytes().as_slice(),
                        want.share.value_bytes().as_slice(),
                    ) =>
            {
                wait_enter("  your copy is correct. Press Enter to clear the screen. ")?;
                return Ok(());
            }
            Ok(_) => println!("  that is another share, not share {index}: compare again"),
            Err(e) => println!("  your copy differs: {e}"),
        }
    }
}
