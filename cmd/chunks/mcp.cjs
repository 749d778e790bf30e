// The bundle's @modelcontextprotocol/server, its /stdio and zod: one chunk (load.cjs).
module.exports = require('./load.cjs').loadChunk('mcp');
