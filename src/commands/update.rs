//! `rangekeeper update`: change one target's current ranges by hand, under the same guards.

use anyhow::{Context as _, bail};
use rangekeeper_cidr::RangeSet;

use crate::cli::{Global, UpdateArgs};
use crate::commands::{self, Outcome};
use crate::declaration::{Declaration, did_you_mean, is_set_name};

/// Resolve `--add/--remove/--set` values: CIDRs, or names of sets in the declaration.
fn resolve(
    decl: &Declaration,
    items: &[String],
    strict: bool,
    flag: &str,
) -> anyhow::Result<RangeSet> {
    let mut set = RangeSet::new();
    for item in items {
        for part in item.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if is_set_name(part) {
                let named = decl.sets.get(part).with_context(|| {
                    let hint = did_you_mean(part, decl.sets.keys().map(String::as_str));
                    format!("{flag} {part}: no set `{part}` in {}{hint}", decl.file)
                })?;
                set = set.union(&named.set);
                continue;
            }
            let parsed = rangekeeper_cidr::parse(part)
                .map_err(|e| anyhow::anyhow!("{flag}: invalid CIDR {e}"))?;
            if let Some(msg) = crate::declaration::bare_unspecified(part) {
                tracing::warn!("{flag}: {msg}");
            }
            if parsed.host_bits {
                let msg = rangekeeper_cidr::host_bits_message(part, &parsed.net, strict);
                if strict {
                    bail!("{flag}: {msg}");
                }
                tracing::warn!("{flag}: {msg}");
            }
            set.insert(parsed.net);
        }
    }
    Ok(set)
}

pub async fn run(global: &Global, args: &UpdateArgs) -> anyhow::Result<Outcome> {
    commands::reject_github(global, "update")?;
    if args.add.is_empty() && args.remove.is_empty() && args.set.is_empty() {
        bail!("nothing to do: give --add, --remove or --set");
    }
    let (decl, lockout) = commands::load(global).await?;
    let bound = commands::bind(
        global,
        &decl,
        lockout.as_ref(),
        commands::select(&decl, std::slice::from_ref(&args.target))?,
    )?;
    let b = bound.first().context("no target selected")?;
    let add = resolve(&decl, &args.add, global.strict, "--add")?;
    let remove = resolve(&decl, &args.remove, global.strict, "--remove")?;
    let set = resolve(&decl, &args.set, global.strict, "--set")?;
    let state = b
        .provider
        .current()
        .await
        .with_context(|| format!("cannot read the current ranges of `{}`", args.target))?;
    let mut warnings = Vec::new();
    let desired = if !args.set.is_empty() {
        set
    } else {
        let current = match state.restriction.known()? {
            Some(s) => s.clone(),
            None => {
                if add.is_empty() {
                    bail!(
                        "`{}` is unrestricted: there is nothing to remove; use --add or --set to restrict it",
                        args.target
                    );
                }
                warnings.push(format!(
                    "`{}` is unrestricted now: --add restricts it to exactly the added ranges",
                    args.target
                ));
                RangeSet::new()
            }
        };
        // The declaration itself requires these: dropping them by hand is refused unless
        // told, since the next apply or reconcile would put them back anyway.
        let declared = remove.intersection(&b.target.desired);
        if !declared.is_empty() && !args.drop_declared {
            bail!(
                "--remove would drop {} that `{}` declares in {} ({declared}); nothing was changed. Remove it from the declaration, or pass --drop-declared to take it out until the next apply",
                crate::output::count(declared.len(), "range"),
                args.target,
                decl.file
            );
        }
        let missing = remove.difference(&current);
        if !missing.is_empty() {
            warnings.push(format!(
                "--remove: `{}` does not hold {missing}",
                args.target
            ));
        }
        current.union(&add).difference(&remove)
    };
    let mut plan = crate::plan::plan_with_state(b, &desired, &state);
    crate::plan::preflight(b, &state, &mut plan)
        .await
        .with_context(|| {
            format!(
                "cannot check the change to `{}` before applying it",
                args.target
            )
        })?;
    plan.warnings.extend(warnings);
    if plan.status == crate::plan::Status::Changes
        && !b.target.desired.is_empty()
        && plan.desired != b.target.desired
    {
        tracing::warn!(
            "`{}` will differ from its declaration in {}: the next `apply` or reconcile reverts this change",
            args.target,
            decl.file
        );
    }
    crate::commands::apply::execute(global, &bound, vec![plan], &args.change, "update", None).await
}
