// The bundle's postgres: a chunk (load.cjs).
module.exports = require('./load.cjs').loadChunk('postgres');
