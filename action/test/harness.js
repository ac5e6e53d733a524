'use strict';
// A simulated GitHub Actions runner for the action's tests: the INPUT_* variables, the
// GITHUB_STATE / GITHUB_OUTPUT / GITHUB_STEP_SUMMARY files, RUNNER_TEMP, and the post
// step's STATE_* variables made from what the main step saved, as the runner does. The
// steps run as child processes (`node action/main.js`), exactly as the runner starts them.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const ACTION_DIR = path.resolve(__dirname, '..');
const REPO_DIR = path.resolve(ACTION_DIR, '..');

/**
 * Parse a runner file-command file: `key<<DELIM` ... `DELIM` blocks and `key=value` lines,
 * later values winning, as the runner reads them.
 */
function parseFileCommands(text) {
  const out = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line === '') continue;
    const heredoc = line.indexOf('<<');
    const eq = line.indexOf('=');
    if (heredoc > 0 && (eq < 0 || heredoc < eq)) {
      const key = line.slice(0, heredoc);
      const delim = line.slice(heredoc + 2);
      const value = [];
      i++;
      while (i < lines.length && lines[i] !== delim) value.push(lines[i++]);
      if (i >= lines.length) throw new Error(`unterminated value of ${key}`);
      out[key] = value.join('\n');
    } else if (eq > 0) {
      out[line.slice(0, eq)] = line.slice(eq + 1);
    } else {
      throw new Error(`not a file command: ${line}`);
    }
  }
  return out;
}

/** A fake `rangekeeper`: records its argv (one JSON array a line) and answers per command. */
const FAKE_RANGEKEEPER = `#!/usr/bin/env node
'use strict';
const fs = require('node:fs');
const argv = process.argv.slice(2);
fs.appendFileSync(process.env.FAKE_RK_LOG, JSON.stringify(argv) + '\\n');
const cmd = argv.find((a) => ['grant', 'revoke', 'validate', 'plan', 'leases'].includes(a)) || 'none';
const key = 'FAKE_RK_' + cmd.toUpperCase();
process.stdout.write(process.env[key + '_STDOUT'] || '');
process.stderr.write('fake rangekeeper: ' + cmd + '\\n');
process.exitCode = Number(process.env[key + '_EXIT'] || 0);
`;

/** A fake `cargo`: records its argv and "installs" the fake rangekeeper under --root. */
const FAKE_CARGO = `#!/usr/bin/env node
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const argv = process.argv.slice(2);
fs.appendFileSync(process.env.FAKE_CARGO_LOG, JSON.stringify(argv) + '\\n');
if (process.env.FAKE_CARGO_EXIT) { process.exitCode = Number(process.env.FAKE_CARGO_EXIT); return; }
const root = argv[argv.indexOf('--root') + 1];
fs.mkdirSync(path.join(root, 'bin'), { recursive: true });
fs.copyFileSync(process.env.FAKE_RK_SOURCE, path.join(root, 'bin', 'rangekeeper'));
fs.chmodSync(path.join(root, 'bin', 'rangekeeper'), 0o755);
`;

function lines(file) {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l));
}

/** One simulated job: a temp dir with the runner's files, and fakes to put on PATH. */
class Runner {
  constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rk-action-'));
    this.temp = path.join(this.dir, 'runner-temp');
    this.fakeBin = path.join(this.dir, 'fake-bin');
    this.cargoBin = path.join(this.dir, 'cargo-bin');
    this.work = path.join(this.dir, 'work');
    for (const d of [this.temp, this.fakeBin, this.cargoBin, this.work]) fs.mkdirSync(d);
    this.stateFile = path.join(this.dir, 'state');
    this.summaryFile = path.join(this.dir, 'summary.md');
    this.rkLog = path.join(this.dir, 'rangekeeper-argv');
    this.cargoLog = path.join(this.dir, 'cargo-argv');
    this.fakeRk = path.join(this.dir, 'fake-rangekeeper');
    fs.writeFileSync(this.fakeRk, FAKE_RANGEKEEPER, { mode: 0o755 });
    fs.writeFileSync(path.join(this.cargoBin, 'cargo'), FAKE_CARGO, { mode: 0o755 });
    this.steps = 0;
  }

  /** Put the fake rangekeeper on PATH. */
  withFakeRangekeeper() {
    fs.copyFileSync(this.fakeRk, path.join(this.fakeBin, 'rangekeeper'));
    fs.chmodSync(path.join(this.fakeBin, 'rangekeeper'), 0o755);
    return this;
  }

  /** The PATH of a step: the fakes, node, and the system directories (never ~/.cargo/bin). */
  path() {
    return [this.fakeBin, this.cargoBin, path.dirname(process.execPath), '/usr/bin', '/bin'].join(
      path.delimiter,
    );
  }

  /**
   * Run `script` (main.js or post.js) as a step with these inputs (names as in action.yml)
   * and extra environment; returns its exit code, stdout, stderr and the outputs it set.
   */
  step(script, inputs = {}, env = {}) {
    this.steps++;
    const outputFile = path.join(this.dir, `output-${this.steps}`);
    const full = {
      PATH: this.path(),
      HOME: this.dir,
      RUNNER_TEMP: this.temp,
      GITHUB_STATE: this.stateFile,
      GITHUB_OUTPUT: outputFile,
      GITHUB_STEP_SUMMARY: this.summaryFile,
      FAKE_RK_LOG: this.rkLog,
      FAKE_CARGO_LOG: this.cargoLog,
      FAKE_RK_SOURCE: this.fakeRk,
      ...env,
    };
    for (const [k, v] of Object.entries(inputs)) full[`INPUT_${k.toUpperCase()}`] = v;
    const r = spawnSync(process.execPath, [path.join(ACTION_DIR, script)], {
      cwd: this.work,
      env: full,
      encoding: 'utf8',
    });
    const outputs = fs.existsSync(outputFile)
      ? parseFileCommands(fs.readFileSync(outputFile, 'utf8'))
      : {};
    return { code: r.status, stdout: r.stdout, stderr: r.stderr, outputs };
  }

  /** The main step, with every input action.yml defaults filled in as the runner does. */
  main(inputs = {}, env = {}) {
    const defaults = {
      command: 'grant',
      file: 'rangekeeper.yaml',
      target: '',
      ttl: '20m',
      ip: '',
      'self-echo': '',
      binary: '',
      install: 'path',
      'install-source': '',
      args: '',
    };
    return this.step('main.js', { ...defaults, ...inputs }, env);
  }

  /** What the main step saved, as the runner hands it to the post step. */
  state() {
    return fs.existsSync(this.stateFile)
      ? parseFileCommands(fs.readFileSync(this.stateFile, 'utf8'))
      : {};
  }

  /** The post step, with STATE_* made from the saved state. */
  post(env = {}) {
    const state = {};
    for (const [k, v] of Object.entries(this.state())) state[`STATE_${k}`] = v;
    return this.step('post.js', {}, { ...state, ...env });
  }

  summary() {
    return fs.existsSync(this.summaryFile) ? fs.readFileSync(this.summaryFile, 'utf8') : '';
  }

  /** Every argv the fake rangekeeper was called with. */
  calls() {
    return lines(this.rkLog);
  }

  cargoCalls() {
    return lines(this.cargoLog);
  }

  cleanup() {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

module.exports = { Runner, parseFileCommands, ACTION_DIR, REPO_DIR };
