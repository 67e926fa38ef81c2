pm.test('status is 200', function () {
    pm.response.to.have.status(200);
});
const body = pm.response.json();
pm.test('the answer is a Bearer access token', function () {
    pm.expect(body.access_token).to.be.a('string').and.not.empty;
    pm.expect(body.token_type).to.eql('Bearer');
    pm.expect(body.expires_in).to.be.a('number').above(0);
    pm.expect(body.scope).to.be.a('string');
});
pm.test('the answer is not cached', function () {
    pm.expect(pm.response.headers.get('Cache-Control')).to.include('no-store');
});
if (pm.response.code === 200) {
    pm.collectionVariables.set('access_token', body.access_token);
    pm.collectionVariables.set('token_expires_at', String(Date.now() + body.expires_in * 1000));
}
