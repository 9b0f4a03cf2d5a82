// The CommonJS entry of the npm package: keepalive.js is an ES module, the
// one source. Node 20.19+ (and 22.12+) can require() an ES module, so this
// hands it over; an older Node cannot, and gets an error that says what to do
// instead of a SyntaxError from inside the module.
'use strict';

try {
  module.exports = require('./keepalive.js');
} catch (error) {
  if (error && (error.code === 'ERR_REQUIRE_ESM' || error.code === 'ERR_REQUIRE_ASYNC_MODULE')) {
    throw new Error(
      "twisted-keepalive is an ES module: load it with import('twisted-keepalive'), " +
        'or use Node 20.19 or newer, which can require() it',
      { cause: error },
    );
  }
  throw error;
}
