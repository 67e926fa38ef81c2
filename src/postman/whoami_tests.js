pm.test('status is 200', function () {
    pm.response.to.have.status(200);
});
const body = pm.response.json();
pm.test('the key signed the request and acts as its owner', function () {
    pm.expect(body.credential).to.eql('sigv4');
    pm.expect(body.client_id).to.eql(pm.variables.get('access_key'));
    pm.expect(body.sub).to.be.a('string').and.not.empty;
});
