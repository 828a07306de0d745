//! LUKS: encryption at rest with `cryptsetup` (LUKS2). The passphrase goes on stdin only.
//!
//! Format only a device that is not LUKS *and* was created by this agent and never formatted
//! (or is all zero in its first 16 MiB); anything else is foreign data and is refused. Before
//! opening an existing header the passphrase is verified, so a wrong one changes nothing.

use std::path::PathBuf;

use async_trait::async_trait;
use blockstor_proto::secret_rules::new_passphrase_problem;
use blockstor_proto::wire::{Origin, Passphrase};
use blockstor_proto::Layer as L;

use super::{Cx, Layer, LuksState, Vol};
use crate::error::{Error, ErrorCode, Kind, Result};
use crate::host::HEAD_BYTES;
use crate::runner::{Command, RunError};

/// Props that tune the key derivation (tests use pbkdf2 to stay fast).
pub const PROP_PBKDF: &str = "Luks/pbkdf";
pub const PROP_ITER_TIME: &str = "Luks/iter-time";
pub const PROP_FORCE_ITERATIONS: &str = "Luks/pbkdf-force-iterations";
/// Where LUKS2 puts the data by default (cryptsetup 2.x): 16 MiB after the start.
pub const LUKS2_DEFAULT_OFFSET: u64 = 16 << 20;

/// The dm-crypt mapping name of a volume: `<rd>-<vol>-luks`, or LINSTOR's
/// `Linstor-Crypt-<rd>_<vol:05>` for a chain LINSTOR built (or whose mapping LINSTOR opened),
/// so an adopted volume keeps the name LINSTOR's `.res` and users' mounts refer to.
pub fn mapper_name(cx: &Cx<'_>, vol: u32) -> String {
    if cx.record.origin == Origin::Linstor
        || cx.host.exists(&crate::linstor::crypt_path(&cx.rd, vol))
    {
        return crate::linstor::crypt_name(&cx.rd, vol);
    }
    format!("{}-{vol}-luks", cx.rd)
}

fn mapper_path(name: &str) -> PathBuf {
    PathBuf::from("/dev/mapper").join(name)
}

/// Checks the LUKS props of a request; returns the field and message of the first bad one.
pub fn validate_props(props: &std::collections::BTreeMap<String, String>) -> Result<()> {
    let field = |k: &str| format!("props[\"{k}\"]");
    if let Some(v) = props.get(PROP_PBKDF) {
        if !["pbkdf2", "argon2i", "argon2id"].contains(&v.as_str()) {
            return Err(Error::invalid(
                ErrorCode::InvalidProp,
                field(PROP_PBKDF),
                format!("{PROP_PBKDF} is {v:?}; use pbkdf2, argon2i or argon2id"),
            ));
        }
    }
    for key in [PROP_ITER_TIME, PROP_FORCE_ITERATIONS] {
        if let Some(v) = props.get(key) {
            if v.parse::<u32>().map_or(true, |n| n == 0) {
                return Err(Error::invalid(
                    ErrorCode::InvalidProp,
                    field(key),
                    format!("{key} is {v:?}; use a positive whole number"),
                ));
            }
        }
    }
    Ok(())
}

/// The encryption layer.
pub struct Luks;

impl Luks {
    fn passphrase<'c>(cx: &'c Cx<'_>) -> Result<&'c Passphrase> {
        cx.luks
            .map(|l| &l.passphrase)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                Error::invalid(
                ErrorCode::LuksPassphraseMissing,
                "passphrase",
                "the layer stack holds LUKS but no passphrase was given; set passphrase on the \
                 resource definition or its resource group",
            )
            })
    }

    fn format_cmd(cx: &Cx<'_>, dev: &str, uuid: &str, pass: &Passphrase) -> Command {
        let mut args: Vec<String> = vec![
            "luksFormat".into(),
            "--type".into(),
            "luks2".into(),
            "--batch-mode".into(),
            format!("--uuid={uuid}"),
        ];
        args.extend(Self::pbkdf_args(cx));
        args.push("--key-file=-".into());
        args.push(dev.into());
        Command::new("cryptsetup", args).with_secret(pass)
    }

    /// `cryptsetup open --test-passphrase`: read-only; a wrong passphrase is
    /// `luks_passphrase_mismatch` and nothing has been changed.
    async fn verify_passphrase(cx: &Cx<'_>, dev: &str, vol: u32, pass: &Passphrase) -> Result<()> {
        if Self::opens(cx, dev, pass).await? {
            return Ok(());
        }
        // A header this agent never wrote nor opened is being adopted: say how to give it
        // the blockstor passphrase (LINSTOR's master passphrase is not a key of it).
        let hint = if cx.record.owns(vol) {
            String::new()
        } else {
            adoption_hint(cx, dev, vol)
        };
        Err(Error::new(
            Kind::Unprocessable,
            ErrorCode::LuksPassphraseMismatch,
            format!(
                "the passphrase does not open the LUKS header on {dev} (volume {vol}); nothing was changed. Use the passphrase the volume was created with{hint}"
            ),
        )
        .field("passphrase"))
    }

    /// Whether `pass` opens a keyslot of the header on `dev` (`cryptsetup open
    /// --test-passphrase`, read-only, also when planning).
    async fn opens(cx: &Cx<'_>, dev: &str, pass: &Passphrase) -> Result<bool> {
        let test = Command::new(
            "cryptsetup",
            ["open", "--test-passphrase", "--key-file=-", dev],
        )
        .with_secret(pass);
        let out = cx.observe(&test).await?;
        if out.success() {
            return Ok(true);
        }
        // Exit code 2: no key slot opened with this passphrase.
        if out.status == 2 || out.stderr.contains("No key available") {
            return Ok(false);
        }
        if out.stderr.contains("No usable keyslot") {
            return Err(Error::new(
                Kind::Conflict,
                ErrorCode::LuksForeignData,
                format!(
                    "the LUKS header on {dev} has no usable keyslot, so no passphrase opens it.                      This agent reformats such a header only on a volume it created whose                      format never completed (a luksFormat killed midway); this one is not, so                      it is left untouched. If the volume holds nothing you need, wipe it                      (`cryptsetup erase {dev}`, then zero its first 16 MiB) and apply again"
                ),
            )
            .field("passphrase"));
        }
        Err(RunError::Failed {
            command: test.to_string(),
            status: out.status,
            stderr: crate::runner::trim_stderr(&out.stderr),
        }
        .into())
    }

    /// The UUID of a header a killed `luksFormat` left without any keyslot, when this agent may
    /// redo that format: the volume's record still says `awaiting_luks_format`, i.e. this agent
    /// created the volume (recorded, fsynced, before it existed) and its format step never
    /// completed. Such a volume has held no data: nothing can have been written through a
    /// header no key opens, and the mark is cleared (fsynced) right after a format succeeds or
    /// a passphrase is verified on it. `None` for every other volume, which is never reformatted.
    async fn unfinished_format(cx: &Cx<'_>, dev: &str, v: &Vol) -> Result<Option<String>> {
        let Some(luks) = &v.luks else {
            return Ok(None);
        };
        let awaiting = cx
            .record
            .volumes
            .get(&v.number)
            .is_some_and(|r| r.created_by_agent && r.awaiting_luks_format);
        if !awaiting || Self::keyslots(cx, dev).await? > 0 {
            return Ok(None);
        }
        Ok(Some(luks.uuid.clone()))
    }

    /// How many keyslots the header on `dev` holds (`cryptsetup luksDump --dump-json-metadata`,
    /// read-only).
    async fn keyslots(cx: &Cx<'_>, dev: &str) -> Result<usize> {
        let dump = Command::new("cryptsetup", ["luksDump", "--dump-json-metadata", dev]);
        let out = cx.runner.run_ok(&dump).await?;
        let json: serde_json::Value = serde_json::from_str(&out.stdout)
            .map_err(|e| Error::internal(format!("`{dump}` printed no LUKS2 metadata: {e}")))?;
        Ok(json
            .get("keyslots")
            .and_then(|k| k.as_object())
            .map_or(0, |k| k.len()))
    }

    /// The key-derivation options of the props, for every new keyslot.
    fn pbkdf_args(cx: &Cx<'_>) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(v) = cx.props.get(PROP_PBKDF) {
            args.push(format!("--pbkdf={v}"));
        }
        if let Some(v) = cx.props.get(PROP_ITER_TIME) {
            args.push(format!("--iter-time={v}"));
        }
        if let Some(v) = cx.props.get(PROP_FORCE_ITERATIONS) {
            args.push(format!("--pbkdf-force-iterations={v}"));
        }
        args
    }

    /// Rotates the header on `dev` from `old` to `new`, in two journalled phases, each decided
    /// by what the header holds now, so a rotation cut short at any point finishes on the next
    /// apply: (1) unless `new` already opens it, add `new` to a free keyslot (authenticated by
    /// `old`) and check that it opens the header; (2) while `old` still opens a keyslot, remove
    /// that keyslot (authenticated by `old` itself, which names the slot). A header that
    /// neither opens is refused untouched.
    async fn rotate(
        cx: &mut Cx<'_>,
        dev: &str,
        vol: u32,
        old: &Passphrase,
        new: &Passphrase,
    ) -> Result<()> {
        let mut new_opens = Self::opens(cx, dev, new).await?;
        let mut old_opens = Self::opens(cx, dev, old).await?;
        if !new_opens && !old_opens {
            return Err(Error::new(
                Kind::Unprocessable,
                ErrorCode::LuksPassphraseMismatch,
                format!(
                    "neither the new nor the previous passphrase opens the LUKS header on {dev} \
                     (volume {vol}); nothing was changed. Set passphrase to the one the volume \
                     holds, apply, then change it"
                ),
            )
            .field("passphrase"));
        }
        if !new_opens {
            let both = rotation_stdin(dev, vol, old, new)?;
            let mut args = vec!["luksAddKey".to_owned(), "--batch-mode".to_owned()];
            args.extend(Self::pbkdf_args(cx));
            args.push(dev.to_owned());
            let add = Command::new("cryptsetup", args).with_secret(&both);
            cx.act(L::Luks, &add).await?;
            new_opens = cx.dry_run || Self::opens(cx, dev, new).await?;
            if !new_opens {
                return Err(Error::internal(format!(
                    "cryptsetup luksAddKey succeeded on {dev} (volume {vol}) but the new \
                     passphrase does not open the header; the previous one still does"
                )));
            }
        }
        // A keyslot holds one passphrase; a header could hold the old one twice. At most 32
        // keyslots exist in LUKS2.
        for _ in 0..32 {
            if !old_opens {
                break;
            }
            let remove = Command::new(
                "cryptsetup",
                ["luksRemoveKey", "--batch-mode", "--key-file=-", dev],
            )
            .with_secret(old);
            cx.act(L::Luks, &remove).await?;
            old_opens = !cx.dry_run && Self::opens(cx, dev, old).await?;
        }
        Ok(())
    }

    /// An open mapping smaller than its backing device allows: a grow whose `cryptsetup
    /// resize` never ran (the agent died after `losetup -c`). Sizes come from the host; only
    /// when they do not match the default LUKS2 data offset does it ask `cryptsetup status`
    /// for the real offset, so a converged volume costs no extra command.
    async fn mapping_lags(cx: &Cx<'_>, dev: &str, mapper: &std::path::Path) -> Result<bool> {
        let size = |p: &std::path::Path| {
            cx.host
                .device_size(p)
                .map_err(|e| Error::internal(format!("cannot size {}: {e}", p.display())))
        };
        let (Some(mapped), Some(backing)) = (size(mapper)?, size(std::path::Path::new(dev))?)
        else {
            return Ok(false);
        };
        if mapped + LUKS2_DEFAULT_OFFSET == backing {
            return Ok(false);
        }
        let name = mapper.file_name().map(|n| n.to_string_lossy().into_owned());
        let status = cx
            .observe(&Command::new(
                "cryptsetup",
                ["status".to_owned(), name.unwrap_or_default()],
            ))
            .await?;
        // `  offset:  32768 sectors`
        let offset_sectors = status.stdout.lines().find_map(|l| {
            l.trim()
                .strip_prefix("offset:")?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        });
        Ok(offset_sectors.is_some_and(|o| mapped + o * 512 < backing))
    }

    /// The error for a kernel without device-mapper, saying what was already done.
    fn no_device_mapper(dev: &str, detail: &str) -> Error {
        Error::new(
            Kind::Unprocessable,
            ErrorCode::KernelFeatureMissing,
            format!(
                "cannot open the LUKS device: this kernel has no device-mapper/dm-crypt \
                 ({detail}). Load the kernel module with `modprobe dm_crypt` (Debian package \
                 linux-image-amd64; in a container, load it on the host) and apply again. \
                 Everything before this step is done and will be reused: backing volume, \
                 block device {dev}, LUKS header written."
            ),
        )
        .field("layer_stack")
    }
}

#[async_trait]
impl Layer for Luks {
    fn kind(&self) -> L {
        L::Luks
    }

    async fn observe(&self, cx: &mut Cx<'_>, vols: &mut [Vol]) -> Result<()> {
        for v in vols.iter_mut() {
            v.luks = None;
            let Some(dev) = v.backing.as_ref().and_then(|b| b.device.clone()) else {
                continue;
            };
            if cx.dry_run && v.created_now {
                continue; // planned device: nothing to look at yet
            }
            let is = cx
                .observe(&Command::new("cryptsetup", ["isLuks", dev.as_str()]))
                .await?;
            if !is.success() {
                continue;
            }
            let uuid = cx
                .runner
                .run_ok(&Command::new("cryptsetup", ["luksUUID", dev.as_str()]))
                .await?
                .stdout
                .trim()
                .to_owned();
            let name = mapper_name(cx, v.number);
            let open = cx.host.exists(&mapper_path(&name));
            if open {
                v.top = Some(mapper_path(&name).display().to_string());
            } else {
                v.top = None;
            }
            v.luks = Some(LuksState { uuid, open });
        }
        Ok(())
    }

    async fn apply(&self, cx: &mut Cx<'_>, vols: &mut [Vol]) -> Result<()> {
        let pass = Self::passphrase(cx)?.clone();
        for (i, v) in vols.iter_mut().enumerate() {
            let dev = v
                .backing
                .as_ref()
                .and_then(|b| b.device.clone())
                .ok_or_else(|| {
                    Error::internal(format!("volume {} has no block device", v.number))
                })?;
            let mut formatted_now = false;
            if v.luks.is_none() {
                let awaiting = cx
                    .record
                    .volumes
                    .get(&v.number)
                    .is_some_and(|r| r.awaiting_luks_format);
                let blank = v.created_now
                    || awaiting
                    || (!cx.dry_run
                        && cx
                            .host
                            .head_is_zero(dev.as_ref(), HEAD_BYTES)
                            .map_err(|e| Error::internal(format!("cannot read {dev}: {e}")))?);
                if !blank {
                    return Err(Error::new(
                        Kind::Conflict,
                        ErrorCode::LuksForeignData,
                        format!(
                            "{dev} (volume {}) holds data and no LUKS header; refusing to format \
                             over it. Wipe it yourself if the data is unwanted, or use another \
                             resource name",
                            v.number
                        ),
                    )
                    .field(format!("volumes[{i}]")));
                }
                if let Some(why) = new_passphrase_problem(pass.expose()) {
                    return Err(Error::invalid(ErrorCode::InvalidRequest, "passphrase", why));
                }
                let uuid = new_uuid();
                cx.act(L::Luks, &Self::format_cmd(cx, &dev, &uuid, &pass))
                    .await?;
                let rec = cx.record.volume(v.number);
                rec.awaiting_luks_format = false;
                rec.adopted = true; // this agent wrote the header
                cx.persist()?;
                v.luks = Some(LuksState { uuid, open: false });
                formatted_now = true;
            }
            if let (false, Some(uuid)) =
                (formatted_now, Self::unfinished_format(cx, &dev, v).await?)
            {
                // Same UUID: what the killed format was writing, finished now.
                cx.act(L::Luks, &Self::format_cmd(cx, &dev, &uuid, &pass))
                    .await?;
                let rec = cx.record.volume(v.number);
                rec.awaiting_luks_format = false;
                rec.adopted = true;
                cx.persist()?;
                formatted_now = true;
            }
            let name = mapper_name(cx, v.number);
            let path = mapper_path(&name);
            let was_open = v.luks.as_ref().is_some_and(|l| l.open);
            // Verify before opening; and when already open, once per new generation (e.g. the
            // first apply after an import), so a wrong passphrase never passes silently.
            let new_generation = cx.record.generation == 0
                || cx
                    .desired
                    .as_ref()
                    .is_some_and(|d| d.generation != cx.record.generation);
            let verify = !formatted_now && !cx.dry_run && (!was_open || new_generation);
            // A rotation runs before the open step: it only touches the header, so it works
            // whether or not the mapping is (or can be) open.
            let previous = cx
                .luks
                .and_then(|l| l.previous_passphrase.clone())
                .filter(|p| !p.is_empty() && p.expose() != pass.expose());
            if let (Some(old), false) = (&previous, formatted_now || v.created_now) {
                Self::rotate(cx, &dev, v.number, old, &pass).await?;
                if !cx.dry_run {
                    cx.record.volume(v.number).adopted = true;
                    cx.persist()?;
                }
            } else if verify {
                Self::verify_passphrase(cx, &dev, v.number, &pass).await?;
                let rec = cx.record.volume(v.number);
                rec.adopted = true;
                // A format killed after its keyslot was written: the header is complete.
                rec.awaiting_luks_format = false;
                cx.persist()?;
            }
            if !was_open {
                if !cx.dry_run && !cx.host.device_mapper_available() {
                    return Err(Self::no_device_mapper(
                        &dev,
                        "/sys/module/dm_mod is missing and /proc/misc lists no device-mapper",
                    ));
                }
                let open = Command::new(
                    "cryptsetup",
                    [
                        "open",
                        "--type",
                        "luks2",
                        "--key-file=-",
                        dev.as_str(),
                        name.as_str(),
                    ],
                )
                .with_secret(&pass);
                match cx.act(L::Luks, &open).await {
                    Ok(_) => {}
                    Err(e) if mentions_missing_dm(&e.message) => {
                        return Err(Self::no_device_mapper(&dev, "cryptsetup could not use it"))
                    }
                    Err(e) => return Err(e),
                }
            } else if v.grew_now || Self::mapping_lags(cx, &dev, &path).await? {
                let resize = Command::new("cryptsetup", ["resize", "--key-file=-", name.as_str()])
                    .with_secret(&pass);
                cx.act(L::Luks, &resize).await?;
            }
            if let Some(l) = v.luks.as_mut() {
                l.open = true;
            }
            v.top = Some(path.display().to_string());
        }
        Ok(())
    }

    async fn teardown(&self, cx: &mut Cx<'_>, vols: &mut [Vol]) -> Result<()> {
        for v in vols.iter_mut() {
            let name = mapper_name(cx, v.number);
            if cx.host.exists(&mapper_path(&name)) {
                cx.act(
                    L::Luks,
                    &Command::new("cryptsetup", ["close", name.as_str()]),
                )
                .await?;
            }
            let Some(dev) = v.backing.as_ref().and_then(|b| b.device.clone()) else {
                continue;
            };
            // Never erase a header this agent did not write or could not open.
            if v.luks.is_some() && cx.record.owns(v.number) {
                cx.act(
                    L::Luks,
                    &Command::new("cryptsetup", ["erase", "--batch-mode", dev.as_str()]),
                )
                .await?;
                let target = PathBuf::from(&dev);
                cx.act_host(
                    L::Luks,
                    vec!["(agent) zero-first-16MiB".into(), dev.clone()],
                    |h| h.zero_head(&target, HEAD_BYTES),
                )?;
            }
            v.luks = None;
            v.top = v.backing.as_ref().and_then(|b| b.device.clone());
        }
        Ok(())
    }
}

/// How to adopt a header whose key blockstor does not have, e.g. one LINSTOR formatted: LINSTOR
/// gives cryptsetup a random per-volume key that it keeps encrypted under its master
/// passphrase, so neither that passphrase nor anything in LINSTOR's API opens the header.
/// Reformatting is never an option; adding a keyslot is.
fn adoption_hint(cx: &Cx<'_>, dev: &str, vol: u32) -> String {
    let linstor = crate::linstor::crypt_name(&cx.rd, vol);
    format!(
        ". If LINSTOR built this volume, its master passphrase does not open the header: \
         LINSTOR formats and opens it with a random per-volume key. Add the blockstor \
         passphrase to a free keyslot on this node, then apply again: `cryptsetup luksAddKey \
         {dev}` (asks for a key that opens the header, then the new passphrase); or, while \
         LINSTOR's mapping {linstor} is open, from its volume key: `dmsetup table --showkeys \
         {linstor}` prints it as the fifth field when the mapping was opened without the \
         kernel keyring; write it as binary to a file on tmpfs and run `cryptsetup luksAddKey \
         --volume-key-file FILE {dev}`, then shred the file"
    )
}

/// cryptsetup's wording when the kernel lacks device-mapper or dm-crypt.
fn mentions_missing_dm(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    s.contains("device-mapper")
        || s.contains("dm-crypt")
        || s.contains("dm_mod")
        || s.contains("device mapper")
}

/// Both passphrases for `luksAddKey`, one a line: without `--key-file`, cryptsetup reads the
/// existing passphrase from stdin up to the first newline and the new one up to the next, so
/// neither appears in argv (`--keyfile-size` would put the old one's length there). Hence a
/// passphrase with a line break cannot be rotated this way and is refused before anything
/// changes. (Checked with cryptsetup 2.6: lines of 100 000 bytes are read whole.)
fn rotation_stdin(dev: &str, vol: u32, old: &Passphrase, new: &Passphrase) -> Result<Passphrase> {
    if [old, new].iter().any(|p| p.expose().contains(['\n', '\r'])) {
        return Err(Error::invalid(
            ErrorCode::LuksPassphraseUnrotatable,
            "passphrase",
            format!(
                "cannot rotate the LUKS passphrase on {dev} (volume {vol}): a passphrase to \
                 rotate from or to has a line break. Use a single-line passphrase"
            ),
        ));
    }
    let mut both = String::with_capacity(old.expose().len() + new.expose().len() + 2);
    both.push_str(old.expose());
    both.push('\n');
    both.push_str(new.expose());
    both.push('\n');
    Ok(Passphrase::new(both))
}

/// A random RFC 4122 version-4 UUID, so the header's UUID is known without asking cryptsetup.
fn new_uuid() -> String {
    let mut b = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_err()
    {
        // Fall back to time and pid entropy; a UUID only needs to be unique, not secret.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = (t ^ ((std::process::id() as u128) << 64)).to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
