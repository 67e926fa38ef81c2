pm.test('status is 200', function () {
    pm.response.to.have.status(200);
});
const body = pm.response.json();
pm.test('the answer is RFC 8414 metadata', function () {
    pm.expect(body.issuer).to.be.a('string').and.not.empty;
    pm.expect(body.token_endpoint).to.eql(body.issuer + '/oauth/token');
    pm.expect(body.jwks_uri).to.eql(body.issuer + '/.well-known/jwks.json');
    pm.expect(body.grant_types_supported).to.include('client_credentials');
});
