'use strict';
// The rangekeeper GitHub Action, without dependencies: the runner protocol (inputs from
// INPUT_* variables, state, outputs and the step summary through the files GITHUB_STATE,
// GITHUB_OUTPUT and GITHUB_STEP_SUMMARY name, workflow commands on stdout) is written here
// as https://docs.github.com/actions describes it, so the action runs on a bare Node 20.
//
// main (`command: grant`): `rangekeeper -f FILE -o json grant --target T --ttl D ...`,
// saving the lease in the step's state before anything else; post: `rangekeeper -f FILE
// revoke --target T --lease ID`. The lease's TTL is the backstop when the post step never
// runs (the runner died). `validate` and `plan` run once and need no post step.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const { spawnSync } = require('node:child_process');

/** An error whose message is the whole story for the user (no stack trace needed). */
class ActionError extends Error {}

/** The value of input `name` (trimmed; '' when not given), as `actions/core` reads it. */
function getInput(env, name) {
  const v = env[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`];
  return (v || '').trim();
}

/** An input holding one item per line ('' lines and surrounding blanks dropped). */
function getLines(env, name) {
  return getInput(env, name)
    .split(/\r?\n/)
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** An input holding items one per line or separated by commas. */
function getList(env, name) {
  return getLines(env, name)
    .flatMap((l) => l.split(','))
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** Escape the message of a workflow command (`::error::...`). */
function escapeData(s) {
  return String(s).replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

/**
 * Append `key` = `value` to the runner's file named by `envName` (GITHUB_STATE,
 * GITHUB_OUTPUT), in the multi-line form with a random delimiter.
 */
function fileCommand(env, envName, key, value) {
  const file = env[envName];
  if (!file) {
    throw new ActionError(
      `${envName} is not set: this action runs as a step of a GitHub Actions job`,
    );
  }
  const text = String(value);
  const delimiter = `ghadelimiter_${crypto.randomUUID()}`;
  if (key.includes(delimiter) || text.includes(delimiter)) {
    throw new ActionError(`the value of ${key} contains its delimiter`);
  }
  fs.appendFileSync(file, `${key}<<${delimiter}\n${text}\n${delimiter}\n`);
}

const saveState = (env, key, value) => fileCommand(env, 'GITHUB_STATE', key, value);
const setOutput = (env, key, value) => fileCommand(env, 'GITHUB_OUTPUT', key, value);

/** Append Markdown to the job's summary page, when the runner offers one. */
function appendSummary(env, markdown) {
  if (env.GITHUB_STEP_SUMMARY) {
    fs.appendFileSync(env.GITHUB_STEP_SUMMARY, markdown.endsWith('\n') ? markdown : `${markdown}\n`);
  }
}

/** Log a line to the step's log (stdout), never read as a workflow command. */
function info(out, line) {
  const s = String(line);
  out.write(s.startsWith('::') ? ` ${s}\n` : `${s}\n`);
}

/** An error annotation on the run. */
function error(out, message) {
  out.write(`::error::${escapeData(message)}\n`);
}

/** The first executable `name` on `PATH`, or null. */
function which(env, name) {
  for (const dir of (env.PATH || '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      if (fs.statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

/** The cargo flags that pin a git ref: a commit, a version tag, or a branch. */
function gitRefFlags(ref) {
  if (!ref) return [];
  if (/^[0-9a-f]{40}$/i.test(ref)) return ['--rev', ref];
  if (/^v?\d/.test(ref)) return ['--tag', ref];
  return ['--branch', ref];
}

/**
 * The `cargo install` arguments for input `install` (`path` or `git`), installing into
 * `root`; null for `none`.
 */
function installArgs(env, root) {
  const how = getInput(env, 'install') || 'path';
  const source = getInput(env, 'install-source');
  const base = ['install', '--locked', '--root', root];
  switch (how) {
    case 'none':
      return null;
    case 'path':
      return [...base, '--path', source || path.resolve(__dirname, '..')];
    case 'git': {
      if (source) return [...base, '--git', source, 'rangekeeper'];
      if (!env.GITHUB_ACTION_REPOSITORY) {
        throw new ActionError(
          '`install: git` needs `install-source` (a git URL) when the action repository is not known',
        );
      }
      const server = env.GITHUB_SERVER_URL || 'https://github.com';
      return [
        ...base,
        '--git',
        `${server}/${env.GITHUB_ACTION_REPOSITORY}`,
        ...gitRefFlags(env.GITHUB_ACTION_REF),
        'rangekeeper',
      ];
    }
    default:
      throw new ActionError(`input \`install\` is \`${how}\`; it must be path, git or none`);
  }
}

/**
 * The rangekeeper binary to run: input `binary`, else `rangekeeper` on PATH, else one that
 * `cargo install` puts under RUNNER_TEMP.
 */
function resolveBinary(env, out) {
  const given = getInput(env, 'binary');
  if (given) {
    const p = path.resolve(given);
    try {
      fs.accessSync(p, fs.constants.X_OK);
    } catch {
      throw new ActionError(`input \`binary\`: ${p} is not an executable file`);
    }
    return p;
  }
  const found = which(env, 'rangekeeper');
  if (found) return found;
  const root = path.join(env.RUNNER_TEMP || os.tmpdir(), 'rangekeeper');
  const args = installArgs(env, root);
  if (args === null) {
    throw new ActionError(
      'no `rangekeeper` on PATH and `install: none`: give `binary`, or install it in an earlier step',
    );
  }
  info(out, `Installing rangekeeper: cargo ${args.join(' ')}`);
  const r = spawnSync('cargo', args, { env, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.error) {
    throw new ActionError(`cannot run cargo to install rangekeeper: ${r.error.message}`);
  }
  if (r.status !== 0) {
    throw new ActionError(`cargo ${args.join(' ')} failed (exit ${r.status ?? r.signal})`);
  }
  return path.join(root, 'bin', 'rangekeeper');
}

/** Run the binary; stdout captured (`capture`) or passed to the log, stderr to the log. */
function run(env, binary, args, out, capture) {
  info(out, `rangekeeper ${args.join(' ')}`);
  const r = spawnSync(binary, args, {
    env,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    stdio: ['ignore', capture ? 'pipe' : 'inherit', 'inherit'],
  });
  if (r.error) throw new ActionError(`cannot run ${binary}: ${r.error.message}`);
  return { code: r.status === null ? `signal ${r.signal}` : r.status, stdout: r.stdout || '' };
}

function md(s) {
  return `\`${String(s).replace(/`/g, "'")}\``;
}

/** `command: grant`. */
function grant(env, out, binary, file, extra) {
  const target = getInput(env, 'target');
  if (!target) throw new ActionError('input `target` is required for `grant`');
  if (getList(env, 'target').length !== 1) {
    throw new ActionError(`\`grant\` opens one target; \`target\` is \`${target}\``);
  }
  if (!env.GITHUB_STATE) {
    // Checked before granting: a lease whose id cannot be saved would never be revoked.
    throw new ActionError('GITHUB_STATE is not set, so the lease could not be revoked after the job: nothing was granted');
  }
  const ttl = getInput(env, 'ttl') || '20m';
  const ip = getInput(env, 'ip');
  const args = ['-f', file, '-o', 'json', 'grant', '--target', target, '--ttl', ttl];
  if (ip) args.push('--ip', ip);
  for (const url of getLines(env, 'self-echo')) args.push('--self-echo', url);
  args.push(...extra);
  const r = run(env, binary, args, out, true);
  if (r.code !== 0) {
    throw new ActionError(
      `rangekeeper grant on \`${target}\` failed (exit ${r.code}); no lease to revoke`,
    );
  }
  let lease;
  try {
    lease = JSON.parse(r.stdout);
  } catch (e) {
    throw new ActionError(`rangekeeper grant printed no JSON lease (${e.message}): ${r.stdout.slice(0, 200)}`);
  }
  const id = lease && typeof lease.id === 'string' ? lease.id.trim() : '';
  if (!id || /\s/.test(id)) {
    throw new ActionError(`rangekeeper grant printed no lease id: ${r.stdout.slice(0, 200)}`);
  }
  // The state first: whatever fails after this, the post step revokes the lease.
  saveState(env, 'lease', id);
  saveState(env, 'target', target);
  saveState(env, 'file', file);
  saveState(env, 'binary', binary);
  saveState(env, 'args', JSON.stringify(extra));
  saveState(env, 'expires', lease.expires || '');
  setOutput(env, 'lease-id', id);
  setOutput(env, 'address', lease.address || '');
  setOutput(env, 'expires', lease.expires || '');
  info(out, `Lease ${id} on ${target} for ${lease.address} until ${lease.expires}; the post step revokes it`);
  appendSummary(
    env,
    `rangekeeper: lease ${md(id)} on ${md(target)} allows ${md(lease.address)} until ` +
      `${md(lease.expires)}, revoked when the job ends.\n`,
  );
}

/** `command: validate`: annotations on stdout for the runner to show on the files. */
function validate(env, out, binary, file, extra) {
  const r = run(env, binary, ['-f', file, 'validate', '-o', 'github', ...extra], out, false);
  if (r.code !== 0) {
    throw new ActionError(`${file} is not valid (exit ${r.code}): see the annotations`);
  }
}

/** `command: plan`: the Markdown plan in a file, the step summary and the outputs. */
function plan(env, out, binary, file, extra) {
  const args = ['-f', file, 'plan', '-o', 'markdown', '--detailed-exitcode'];
  for (const t of getList(env, 'target')) args.push('--target', t);
  args.push(...extra);
  const r = run(env, binary, args, out, true);
  if (r.stdout) {
    const dir = env.RUNNER_TEMP || os.tmpdir();
    const planFile = path.join(dir, `rangekeeper-plan-${crypto.randomUUID()}.md`);
    fs.writeFileSync(planFile, r.stdout);
    setOutput(env, 'plan-file', planFile);
    appendSummary(env, r.stdout);
  }
  setOutput(env, 'changes', r.code === 2 ? 'true' : 'false');
  if (r.code !== 0 && r.code !== 2) {
    throw new ActionError(`rangekeeper plan failed or was refused (exit ${r.code}): see the plan and the log`);
  }
}

/** The main step. Returns the process exit code. */
function main(env = process.env, out = process.stdout) {
  try {
    const command = getInput(env, 'command') || 'grant';
    const commands = { grant, validate, plan };
    if (!Object.hasOwn(commands, command)) {
      throw new ActionError(`input \`command\` is \`${command}\`; it must be grant, validate or plan`);
    }
    const file = getInput(env, 'file') || 'rangekeeper.yaml';
    const extra = getLines(env, 'args');
    const binary = resolveBinary(env, out);
    setOutput(env, 'binary', binary);
    commands[command](env, out, binary, file, extra);
    return 0;
  } catch (e) {
    error(out, e instanceof ActionError ? e.message : `rangekeeper action: ${e.stack || e}`);
    return 1;
  }
}

/** The post step: revoke the lease the main step saved (none: nothing to do). */
function post(env = process.env, out = process.stdout) {
  try {
    const lease = (env.STATE_lease || '').trim();
    if (!lease) {
      info(out, 'rangekeeper: no lease to revoke');
      return 0;
    }
    const target = env.STATE_target || '';
    const file = env.STATE_file || 'rangekeeper.yaml';
    const binary = env.STATE_binary || 'rangekeeper';
    let extra = [];
    try {
      extra = JSON.parse(env.STATE_args || '[]');
    } catch {
      extra = [];
    }
    const r = run(env, binary, ['-f', file, 'revoke', '--target', target, '--lease', lease, ...extra], out, false);
    if (r.code !== 0) {
      const until = env.STATE_expires ? ` It expires at ${env.STATE_expires}.` : '';
      throw new ActionError(
        `could not revoke lease ${lease} on ${target} (rangekeeper exit ${r.code}).${until} ` +
          `Revoke it with: rangekeeper -f ${file} revoke --target ${target} --lease ${lease}`,
      );
    }
    info(out, `Revoked lease ${lease} on ${target}`);
    return 0;
  } catch (e) {
    error(out, e instanceof ActionError ? e.message : `rangekeeper action: ${e.stack || e}`);
    return 1;
  }
}

module.exports = { main, post, getInput, getList, getLines, escapeData, gitRefFlags, installArgs };
