'use strict';
// The action's main step (action.yml `runs.main`): see lib.js.
process.exitCode = require('./lib.js').main();
