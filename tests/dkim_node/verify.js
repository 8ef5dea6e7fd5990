// Verifies every DKIM signature of the message on stdin with mailauth, an implementation
// independent of dkimpy and emailsec. The DNS records come from argv[2], a JSON object
// {"selector._domainkey.domain": "v=DKIM1; k=...; p=..."}: nothing is looked up.
// Prints one line per signature: its result ("pass", "fail", "neutral", ...).
'use strict';
const { dkimVerify } = require('mailauth/lib/dkim/verify');

const records = JSON.parse(process.argv[2]);
const resolver = async (name, rrtype) => {
    if (rrtype !== 'TXT' || !(name in records)) {
        const error = new Error(`no ${rrtype} record for ${name}`);
        error.code = 'ENOTFOUND';
        throw error;
    }
    return [[records[name]]];
};

const chunks = [];
process.stdin.on('data', chunk => chunks.push(chunk));
process.stdin.on('end', async () => {
    const result = await dkimVerify(Buffer.concat(chunks), { resolver });
    for (const signature of result.results) {
        console.log(signature.status.result);
    }
});
